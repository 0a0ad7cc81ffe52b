//! Several broker hosts (the nodes of a cluster): how a URL lists them, and in which order a
//! connection tries them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::error::{Error, Result};

/// In which order [`Connection::open`](crate::Connection::open) tries the hosts of an
/// [`AmqpConfig`](crate::AmqpConfig), on every connect and every reconnect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostOrder {
    /// As listed: the first host that accepts the connection wins (the others are stand-ins).
    #[default]
    InOrder,
    /// In a random order each time, which spreads the clients of a service over the nodes.
    Shuffled,
}

/// Hosts of a URL's list after the first, with their port where the URL gives one.
pub(crate) type MoreHosts = Vec<(String, Option<u16>)>;

/// Splits the authority of an AMQP URL that lists several hosts
/// (`amqp://user:pass@node1:5673,node2:5674,node3/vhost`): returns the URL with only the first
/// host, and the other hosts with their port if they give one.
///
/// # Errors
///
/// [`Error::InvalidConfig`] for an empty host in the list or a port that is not a number. The
/// message never contains the password.
pub(crate) fn split_url(url: &str) -> Result<(String, MoreHosts)> {
    let Some(scheme_end) = url.find("://") else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // The hosts follow the last '@' (a password may hold ',' but not an unescaped '@').
    let hosts_start = authority.rfind('@').map_or(0, |at| at + 1);
    let hosts = &authority[hosts_start..];
    if !hosts.contains(',') {
        return Ok((url.to_owned(), Vec::new()));
    }
    let mut parts = hosts.split(',');
    let first = parts.next().unwrap_or_default();
    let mut others = Vec::new();
    for part in parts {
        others.push(parse_host_port(part)?);
    }
    if first.is_empty() {
        return Err(empty_host());
    }
    let single = format!(
        "{}{}{}",
        &url[..rest_start + hosts_start],
        first,
        &rest[authority_len..]
    );
    Ok((single, others))
}

fn empty_host() -> Error {
    Error::InvalidConfig {
        field: "host",
        message: "the URL's host list has an empty entry".to_owned(),
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_host_port(text: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(Error::InvalidConfig {
                field: "host",
                message: format!("unclosed '[' in the host list entry {text:?}"),
            });
        };
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(empty_host());
    }
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().map_err(|_| Error::InvalidConfig {
            field: "port",
            message: format!("the port of host list entry {text:?} is not a number"),
        })?),
    };
    Ok((host.to_owned(), port))
}

/// The order in which to try `count` hosts: `0..count`, or for [`HostOrder::Shuffled`] a
/// random permutation of it.
pub(crate) fn connect_order(count: usize, order: HostOrder) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..count).collect();
    if order == HostOrder::Shuffled {
        let mut seed = RandomState::new().build_hasher().finish() | 1;
        shuffle(&mut indices, &mut seed);
    }
    indices
}

/// Fisher-Yates with a xorshift generator: enough to spread connections, not cryptography.
fn shuffle(items: &mut [usize], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let j = (*seed % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_host_lists() {
        type Hosts = Vec<(&'static str, Option<u16>)>;
        let check = |url: &str, first: &str, others: Hosts| {
            let (single, rest) = split_url(url).unwrap();
            assert_eq!(single, first, "{url}");
            let expected: Vec<(String, Option<u16>)> =
                others.into_iter().map(|(h, p)| (h.to_owned(), p)).collect();
            assert_eq!(rest, expected, "{url}");
        };
        check("amqp://rabbit/%2f", "amqp://rabbit/%2f", vec![]);
        check(
            "amqp://u:p@n1:5673,n2:5674,n3/%2f?heartbeat=5",
            "amqp://u:p@n1:5673/%2f?heartbeat=5",
            vec![("n2", Some(5674)), ("n3", None)],
        );
        check(
            "amqps://u:p,w@a,[::1]:5671,b:1",
            "amqps://u:p,w@a",
            vec![("::1", Some(5671)), ("b", Some(1))],
        );
        check("amqp://a,b?x=1", "amqp://a?x=1", vec![("b", None)]);
        check("not a url", "not a url", vec![]);
    }

    #[test]
    fn bad_host_lists_are_errors_without_the_password() {
        for url in [
            "amqp://u:secret@n1,,n3/",
            "amqp://u:secret@,n2/",
            "amqp://u:secret@n1,n2:port/",
            "amqp://u:secret@n1,[::1/",
            "amqp://u:secret@n1,:5672/",
        ] {
            let err = split_url(url).unwrap_err();
            assert!(matches!(err, Error::InvalidConfig { .. }), "{url}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn shuffled_orders_are_permutations() {
        assert_eq!(connect_order(3, HostOrder::InOrder), [0, 1, 2]);
        let mut firsts = [0; 3];
        for _ in 0..300 {
            let mut order = connect_order(3, HostOrder::Shuffled);
            firsts[order[0]] += 1;
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2]);
        }
        assert!(firsts.iter().all(|&n| n > 30), "{firsts:?}");
        assert!(connect_order(0, HostOrder::Shuffled).is_empty());
    }
}
