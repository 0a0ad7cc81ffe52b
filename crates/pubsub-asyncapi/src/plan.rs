//! What a service's document holds, decided without rendering anything: which channels (one
//! per address: a binding pattern or a routing key), which messages on each, which operations
//! and their ids. Pure, and table-tested below.

use std::collections::HashSet;

use pubsub_registry::Pattern;

use crate::error::{Error, Result};

/// The most bytes a routing key has (AMQP's short string).
const MAX_KEY_LEN: usize = 255;

/// A typed event the service declared, by the name of its schema and its routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Declared {
    /// The name of the type's schema, e.g. `UserRegistered`.
    pub(crate) name: String,
    /// The type's routing key.
    pub(crate) key: String,
    /// Whether the service receives it or sends it.
    pub(crate) action: Action,
}

/// An operation's direction, in AsyncAPI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The service consumes it (from its queue).
    Receive,
    /// The service publishes it (to the exchange).
    Send,
}

impl Action {
    /// AsyncAPI's word for it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Receive => "receive",
            Action::Send => "send",
        }
    }
}

/// What the document is made of.
#[derive(Debug, Default)]
pub(crate) struct Inputs<'a> {
    /// The patterns of the service's subscriptions, in registration order.
    pub(crate) subscriptions: &'a [String],
    /// The typed events it declared, in declaration order.
    pub(crate) declared: &'a [Declared],
    /// Routing keys it publishes without a type, in declaration order.
    pub(crate) published_keys: &'a [String],
}

/// One message of the document (a `components.messages` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// Its id in `components.messages`.
    pub(crate) id: String,
    /// What it is.
    pub(crate) kind: Kind,
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A declared typed event: its schema name and routing key.
    Typed { name: String, key: String },
    /// Any event on this exact routing key (no type declared: `data` is any object).
    Key(String),
    /// Any event at all (on a wildcard pattern).
    Any,
}

/// One channel: an address on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channel {
    /// Its id in `channels`.
    pub(crate) id: String,
    /// The binding pattern (as the broker understands it) or routing key.
    pub(crate) address: String,
    /// Indices into [`Plan::messages`], in order.
    pub(crate) messages: Vec<usize>,
}

/// One operation of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operation {
    /// Its id in `operations`.
    pub(crate) id: String,
    /// Receive or send.
    pub(crate) action: Action,
    /// Index into [`Plan::channels`].
    pub(crate) channel: usize,
    /// Indices into [`Plan::messages`]: a subset of the channel's.
    pub(crate) messages: Vec<usize>,
}

/// The document's channels, operations and messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) messages: Vec<Message>,
    pub(crate) channels: Vec<Channel>,
    pub(crate) operations: Vec<Operation>,
}

impl Plan {
    /// The index of the message of `kind`, added (with a unique id) if new.
    fn message(&mut self, kind: Kind, ids: &mut Ids) -> usize {
        if let Some(i) = self.messages.iter().position(|m| m.kind == kind) {
            return i;
        }
        let wanted = match &kind {
            Kind::Typed { name, .. } => component_id(name),
            Kind::Key(key) => component_id(key),
            Kind::Any => "Event".to_owned(),
        };
        let id = ids.unique(&wanted);
        self.messages.push(Message { id, kind });
        self.messages.len() - 1
    }

    /// The index of the channel at `address`, added (with a unique id) if new.
    fn channel(&mut self, address: &str, ids: &mut Ids) -> usize {
        if let Some(i) = self.channels.iter().position(|c| c.address == address) {
            return i;
        }
        let id = ids.unique(&channel_id(address));
        self.channels.push(Channel {
            id,
            address: address.to_owned(),
            messages: Vec::new(),
        });
        self.channels.len() - 1
    }
}

/// Ids taken in one namespace; a taken id gets a number: `id_2`, `id_3`...
#[derive(Debug, Default)]
struct Ids(HashSet<String>);

impl Ids {
    fn unique(&mut self, wanted: &str) -> String {
        let mut id = wanted.to_owned();
        let mut n = 1;
        while self.0.contains(&id) {
            n += 1;
            id = format!("{wanted}_{n}");
        }
        self.0.insert(id.clone());
        id
    }
}

/// Decides the document: a receive channel and operation per distinct subscription pattern
/// (as its broker binding key), with the declared typed events it matches and, on a
/// wildcard, any event; a send channel per published routing key (shared with a receive
/// channel of the same exact key) and one send operation per channel.
///
/// # Errors
///
/// [`Error::Pattern`] for a subscription pattern that does not parse,
/// [`Error::NotSubscribed`] for a typed event declared received that no subscription
/// matches, [`Error::InvalidRoutingKey`] for a published key that is not one.
pub(crate) fn plan(inputs: &Inputs<'_>) -> Result<Plan> {
    let mut plan = Plan::default();
    let (mut message_ids, mut channel_ids, mut operation_ids) =
        (Ids::default(), Ids::default(), Ids::default());

    let mut patterns: Vec<(Pattern, String)> = Vec::new();
    for raw in inputs.subscriptions {
        let pattern = Pattern::parse(raw)?;
        let key = pattern.binding_key();
        if !patterns.iter().any(|(_, k)| *k == key) {
            patterns.push((Pattern::parse(&key)?, key));
        }
    }
    for declared in inputs.declared {
        if declared.action == Action::Receive
            && !patterns.iter().any(|(p, _)| p.matches(&declared.key))
        {
            return Err(Error::NotSubscribed {
                name: declared.name.clone(),
                key: declared.key.clone(),
            });
        }
    }
    // Every declared type, received or sent, is a message a subscription may match: a
    // service that subscribes to `#` receives what it publishes too.
    let typed: Vec<Kind> = {
        let mut kinds: Vec<Kind> = Vec::new();
        for d in inputs.declared {
            let kind = Kind::Typed {
                name: d.name.clone(),
                key: d.key.clone(),
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    };

    for (pattern, key) in &patterns {
        let mut messages = Vec::new();
        for kind in &typed {
            if let Kind::Typed { key: k, .. } = kind {
                if pattern.matches(k) {
                    messages.push(plan.message(kind.clone(), &mut message_ids));
                }
            }
        }
        if is_wildcard(key) {
            messages.push(plan.message(Kind::Any, &mut message_ids));
        } else if !typed
            .iter()
            .any(|k| matches!(k, Kind::Typed { key: k, .. } if k == key))
        {
            messages.push(plan.message(Kind::Key(key.clone()), &mut message_ids));
        }
        let channel = plan.channel(key, &mut channel_ids);
        plan.channels[channel].messages = messages.clone();
        let id = operation_ids.unique(&operation_id(Action::Receive, key));
        plan.operations.push(Operation {
            id,
            action: Action::Receive,
            channel,
            messages,
        });
    }

    // Sends: grouped by routing key, in the order the keys were first declared.
    let mut sends: Vec<(String, Kind)> = Vec::new();
    for d in inputs.declared.iter().filter(|d| d.action == Action::Send) {
        let kind = Kind::Typed {
            name: d.name.clone(),
            key: d.key.clone(),
        };
        sends.push((d.key.clone(), kind));
    }
    for key in inputs.published_keys {
        check_routing_key(key)?;
        sends.push((key.clone(), Kind::Key(key.clone())));
    }
    let mut send_ops: Vec<usize> = Vec::new();
    for (key, kind) in sends {
        let message = plan.message(kind, &mut message_ids);
        let channel = plan.channel(&key, &mut channel_ids);
        if !plan.channels[channel].messages.contains(&message) {
            plan.channels[channel].messages.push(message);
        }
        let op = match send_ops
            .iter()
            .copied()
            .find(|&op| plan.operations[op].channel == channel)
        {
            Some(op) => op,
            None => {
                let id = operation_ids.unique(&operation_id(Action::Send, &key));
                plan.operations.push(Operation {
                    id,
                    action: Action::Send,
                    channel,
                    messages: Vec::new(),
                });
                send_ops.push(plan.operations.len() - 1);
                plan.operations.len() - 1
            }
        };
        if !plan.operations[op].messages.contains(&message) {
            plan.operations[op].messages.push(message);
        }
    }
    Ok(plan)
}

/// Whether a binding key has a wildcard word (`*` or `#`).
fn is_wildcard(key: &str) -> bool {
    key.split('.').any(|w| w == "*" || w == "#")
}

/// A routing key's word as an id word: `*` is `any`, `#` is `all`, and characters other
/// than letters, digits, `_` and `-` become `_`.
fn id_word(word: &str) -> String {
    match word {
        "*" => "any".to_owned(),
        "#" => "all".to_owned(),
        w => w
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

/// The id of the channel at `address`: its words as id words (`order.*` is `order.any`).
pub(crate) fn channel_id(address: &str) -> String {
    address
        .split('.')
        .map(id_word)
        .collect::<Vec<_>>()
        .join(".")
}

/// A `components` key (`^[\w\d.\-_]+$`) for a name: other characters become `_`.
pub(crate) fn component_id(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "_".to_owned()
    } else {
        id
    }
}

/// An operation's id, camelCase: `receiveOrderAny` for receiving `order.*`,
/// `sendUserRegisteredV2` for sending `user.registered.v2`.
pub(crate) fn operation_id(action: Action, address: &str) -> String {
    let mut id = action.as_str().to_owned();
    for word in address.split('.').map(id_word) {
        for part in word.split(['_', '-']) {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                id.extend(first.to_uppercase());
                id.push_str(chars.as_str());
            }
        }
    }
    id
}

/// What a routing key says of its event: domain, action and the major version of a
/// versioned key (`domain.action.vN`), when it is one of those shapes.
pub(crate) fn key_parts(key: &str) -> Option<(&str, &str, Option<u64>)> {
    let words: Vec<&str> = key.split('.').collect();
    let valid = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match words[..] {
        [domain, action] if valid(domain) && valid(action) => Some((domain, action, None)),
        [domain, action, version] if valid(domain) && valid(action) => {
            let digits = version.strip_prefix('v')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((domain, action, Some(digits.parse().ok()?)))
        }
        _ => None,
    }
}

/// Checks a routing key to publish with: `domain.action` or `domain.action.vN`, as events
/// have.
fn check_routing_key(key: &str) -> Result<()> {
    let invalid = |reason: &'static str| Error::InvalidRoutingKey {
        key: pubsub_core::text::truncate_chars(key, 80),
        reason,
    };
    if key.len() > MAX_KEY_LEN {
        return Err(invalid("a routing key must not be longer than 255 bytes"));
    }
    if key_parts(key).is_none() {
        return Err(invalid(
            "a published routing key is `domain.action` or `domain.action.vN`, words of \
             letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(name: &str, key: &str, action: Action) -> Declared {
        Declared {
            name: name.into(),
            key: key.into(),
            action,
        }
    }

    /// The plan as lines: `channel id @ address: messages`, then
    /// `operation id: action channel-id [messages]`.
    fn show(plan: &Plan) -> Vec<String> {
        let names = |ms: &[usize]| {
            ms.iter()
                .map(|&m| plan.messages[m].id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut lines: Vec<String> = plan
            .channels
            .iter()
            .map(|c| format!("{} @ {}: {}", c.id, c.address, names(&c.messages)))
            .collect();
        lines.extend(plan.operations.iter().map(|o| {
            format!(
                "{}: {} {} [{}]",
                o.id,
                o.action.as_str(),
                plan.channels[o.channel].id,
                names(&o.messages)
            )
        }));
        lines
    }

    #[test]
    fn plans() {
        use Action::{Receive, Send};
        let check = |subscriptions: &[&str],
                     declared: &[Declared],
                     published: &[&str],
                     expected: &[&str]| {
            let subscriptions: Vec<String> = subscriptions.iter().map(|s| s.to_string()).collect();
            let published: Vec<String> = published.iter().map(|s| s.to_string()).collect();
            let plan = plan(&Inputs {
                subscriptions: &subscriptions,
                declared,
                published_keys: &published,
            })
            .unwrap();
            assert_eq!(show(&plan), expected, "{subscriptions:?} {declared:?}");
        };
        // Nothing: an empty document.
        check(&[], &[], &[], &[]);
        // An untyped exact subscription: any event on that key.
        check(
            &["shop.placed"],
            &[],
            &[],
            &[
                "shop.placed @ shop.placed: shop.placed",
                "receiveShopPlaced: receive shop.placed [shop.placed]",
            ],
        );
        // The same key declared typed: the typed message instead.
        check(
            &["shop.placed"],
            &[declared("Placed", "shop.placed", Receive)],
            &[],
            &[
                "shop.placed @ shop.placed: Placed",
                "receiveShopPlaced: receive shop.placed [Placed]",
            ],
        );
        // Wildcards: the declared types they match, then any event. A glob word and a lone
        // `*` are widened as the broker binding is; duplicates are one channel.
        check(
            &["shop.*", "shop.pla*", "*"],
            &[
                declared("Placed", "shop.placed", Receive),
                declared("Paid", "shop.paid", Send),
                declared("Joined", "user.joined", Send),
            ],
            &[],
            &[
                "shop.any @ shop.*: Placed,Paid,Event",
                "all @ #: Placed,Paid,Joined,Event",
                "shop.paid @ shop.paid: Paid",
                "user.joined @ user.joined: Joined",
                "receiveShopAny: receive shop.any [Placed,Paid,Event]",
                "receiveAll: receive all [Placed,Paid,Joined,Event]",
                "sendShopPaid: send shop.paid [Paid]",
                "sendUserJoined: send user.joined [Joined]",
            ],
        );
        // Receiving and sending the same key: one channel, two operations.
        check(
            &["shop.placed"],
            &[declared("Placed", "shop.placed", Send)],
            &[],
            &[
                "shop.placed @ shop.placed: Placed",
                "receiveShopPlaced: receive shop.placed [Placed]",
                "sendShopPlaced: send shop.placed [Placed]",
            ],
        );
        // Two versions: a versioned key is its own channel; two types on one key share the
        // send operation; an untyped published key.
        check(
            &[],
            &[
                declared("PlacedV1", "shop.placed", Send),
                declared("PlacedV3", "shop.placed.v3", Send),
                declared("PlacedV1_1", "shop.placed", Send),
            ],
            &["audit.logged", "shop.placed"],
            &[
                "shop.placed @ shop.placed: PlacedV1,PlacedV1_1,shop.placed",
                "shop.placed.v3 @ shop.placed.v3: PlacedV3",
                "audit.logged @ audit.logged: audit.logged",
                "sendShopPlaced: send shop.placed [PlacedV1,PlacedV1_1,shop.placed]",
                "sendShopPlacedV3: send shop.placed.v3 [PlacedV3]",
                "sendAuditLogged: send audit.logged [audit.logged]",
            ],
        );
        // Ids that would collide get a number; odd characters become `_`.
        check(
            &["a.*", "a.any", "a-b.c", "a_b.c", "ü.#"],
            &[],
            &[],
            &[
                "a.any @ a.*: Event",
                "a.any_2 @ a.any: a.any",
                "a-b.c @ a-b.c: a-b.c",
                "a_b.c @ a_b.c: a_b.c",
                "_.all @ ü.#: Event",
                "receiveAAny: receive a.any [Event]",
                "receiveAAny_2: receive a.any_2 [a.any]",
                "receiveABC: receive a-b.c [a-b.c]",
                "receiveABC_2: receive a_b.c [a_b.c]",
                "receiveAll: receive _.all [Event]",
            ],
        );
    }

    #[test]
    fn refusals() {
        let check =
            |subscriptions: &[&str], declared: &[Declared], published: &[&str], err: &str| {
                let subscriptions: Vec<String> =
                    subscriptions.iter().map(|s| s.to_string()).collect();
                let published: Vec<String> = published.iter().map(|s| s.to_string()).collect();
                let got = plan(&Inputs {
                    subscriptions: &subscriptions,
                    declared,
                    published_keys: &published,
                })
                .unwrap_err();
                let got = pubsub_core::text::error_chain(&got);
                assert!(got.contains(err), "{got:?} should contain {err:?}");
            };
        check(&["shop..placed"], &[], &[], "shop..placed");
        check(
            &["shop.paid"],
            &[declared("Placed", "shop.placed", Action::Receive)],
            &[],
            "`Placed` (`shop.placed`) is declared received",
        );
        check(&[], &[], &["shop.*"], "`shop.*`");
        check(&[], &[], &["shop"], "`shop`");
        check(&[], &[], &["shop.placed.2"], "`shop.placed.2`");
        check(&[], &[], &[""], "``");
        check(&[], &[], &[&"a.".repeat(200)], "longer than 255");
    }

    #[test]
    fn key_parts_of_routing_keys() {
        let check = |key: &str, expected: Option<(&str, &str, Option<u64>)>| {
            assert_eq!(key_parts(key), expected, "{key:?}");
        };
        check("shop.placed", Some(("shop", "placed", None)));
        check("shop.placed.v3", Some(("shop", "placed", Some(3))));
        check("shop.placed.v", None);
        check("shop.placed.3", None);
        check("shop.placed.vx", None);
        check("shop.placed.v99999999999999999999", None);
        check("shop", None);
        check("shop.*", None);
        check("a.b.c.d", None);
        check(".placed", None);
    }

    #[test]
    fn ids() {
        let check = |address: &str, channel: &str, receive: &str| {
            assert_eq!(channel_id(address), channel, "{address}");
            assert_eq!(operation_id(Action::Receive, address), receive, "{address}");
        };
        check("shop.placed", "shop.placed", "receiveShopPlaced");
        check("shop.*", "shop.any", "receiveShopAny");
        check("#", "all", "receiveAll");
        check("shop.#", "shop.all", "receiveShopAll");
        check(
            "user-account.signed_up",
            "user-account.signed_up",
            "receiveUserAccountSignedUp",
        );
        check("shop.placed.v2", "shop.placed.v2", "receiveShopPlacedV2");
        check("a/b.c~d", "a_b.c_d", "receiveABCD");
        assert_eq!(component_id("Body<Placed>"), "Body_Placed_");
        assert_eq!(component_id(""), "_");
        assert_eq!(operation_id(Action::Send, "shop.placed"), "sendShopPlaced");
    }
}
