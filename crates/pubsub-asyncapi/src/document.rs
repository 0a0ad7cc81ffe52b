//! [`AsyncApi`], the builder, and the [`Document`] it renders from a [`plan`](crate::plan).

use std::fmt;

use pubsub_core::schema::{any_object, body_schema, Body, Headers};
use pubsub_core::{Event, TypedEvent};
use pubsub_registry::HandlerRegistry;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::plan::{self, key_parts, Action, Declared, Inputs, Kind, Plan};

/// The AsyncAPI version of the documents this crate writes.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The version of the AsyncAPI AMQP bindings the documents use.
pub const AMQP_BINDING_VERSION: &str = "0.3.0";

/// Where the schemas live in a document (a JSON pointer); `$ref`s point there.
const SCHEMAS: &str = "/components/schemas";

/// Describes one service on the bus and writes its AsyncAPI 3 document: the exchange, the
/// routing keys the service subscribes to (its queue's bindings) and publishes, and the JSON
/// Schema of every message.
///
/// What the service receives comes from its subscription patterns
/// ([`subscriptions`](Self::subscriptions) of its registry, or [`subscribe`](Self::subscribe));
/// [`receives::<T>`](Self::receives) adds the schema of a typed event a subscription
/// matches. What it sends is declared: [`publishes::<T>`](Self::publishes) for a typed event,
/// [`publishes_key`](Self::publishes_key) for a routing key without a type. Every message's
/// payload is the whole wire body (`domain`, `action`, `data`, `event_id`, `timestamp`,
/// `version`), with `data` the typed event's schema, or any object when there is no type.
///
/// ```
/// use pubsub_asyncapi::AsyncApi;
///
/// let document = AsyncApi::new("audit", "events")
///     .subscribe("shop.*")
///     .publishes_key("audit.logged")
///     .build()?;
/// let doc = document.as_value();
/// assert_eq!(doc["channels"]["shop.any"]["address"], "shop.*");
/// assert_eq!(doc["operations"]["receiveShopAny"]["action"], "receive");
/// assert_eq!(doc["operations"]["sendAuditLogged"]["action"], "send");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct AsyncApi {
    service: String,
    exchange: String,
    queue: Option<String>,
    vhost: String,
    version: String,
    description: Option<String>,
    mandatory: bool,
    servers: Vec<(String, String)>,
    subscriptions: Vec<String>,
    declared: Vec<Declared>,
    published_keys: Vec<String>,
    /// The body schema of each declared type.
    payloads: Vec<Payload>,
    generator: SchemaGenerator,
}

impl AsyncApi {
    /// The document of the service `service` on the exchange `exchange` (a durable topic
    /// exchange). Its queue is named after the service unless [`queue`](Self::queue) says
    /// otherwise.
    pub fn new(service: &str, exchange: &str) -> Self {
        let settings = SchemaSettings::draft07().with(|s| {
            s.definitions_path = SCHEMAS.into();
            s.meta_schema = None;
        });
        AsyncApi {
            service: service.to_owned(),
            exchange: exchange.to_owned(),
            queue: None,
            vhost: "/".to_owned(),
            version: "1.0.0".to_owned(),
            description: None,
            mandatory: true,
            servers: Vec::new(),
            subscriptions: Vec::new(),
            declared: Vec::new(),
            published_keys: Vec::new(),
            payloads: Vec::new(),
            generator: settings.into_generator(),
        }
    }

    /// The queue the service consumes (by default the service's name).
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = Some(queue.to_owned());
        self
    }

    /// The virtual host of the exchange (`/` by default).
    pub fn vhost(mut self, vhost: &str) -> Self {
        self.vhost = vhost.to_owned();
        self
    }

    /// The version of the service's API, `info.version` (`1.0.0` by default).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// A description of the service, `info.description` (CommonMark). By default the
    /// document says which exchange and queue the service uses.
    pub fn description(mut self, description: &str) -> Self {
        self.description = Some(description.to_owned());
        self
    }

    /// Whether the service publishes with `mandatory` (asks the broker to return what no
    /// queue receives; `true` by default, as the publisher does unless told to ignore
    /// unroutable events).
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// Adds a broker the service runs against, e.g. `("production",
    /// "rabbitmq.internal:5672")`, or an `amqps://` host for TLS. None by default: a document
    /// names hosts only when asked to. Checked by [`build`](Self::build): no credentials.
    pub fn server(mut self, name: &str, host: &str) -> Self {
        self.servers.push((name.to_owned(), host.to_owned()));
        self
    }

    /// Adds a subscription pattern (AMQP topic semantics, as in `HandlerRegistry`): the
    /// service receives what it matches. Checked by [`build`](Self::build).
    pub fn subscribe(mut self, pattern: &str) -> Self {
        self.subscriptions.push(pattern.to_owned());
        self
    }

    /// Adds the patterns of every subscription of `registry`, in registration order.
    pub fn subscriptions(mut self, registry: &HandlerRegistry) -> Self {
        self.subscriptions.extend(
            registry
                .subscriptions()
                .iter()
                .map(|s| s.pattern().as_str().to_owned()),
        );
        self
    }

    /// Declares that the service receives the typed event `T` (a subscription must match
    /// its routing key), so that its messages carry `T`'s schema.
    pub fn receives<T: TypedEvent + JsonSchema>(self) -> Self {
        self.declare::<T>(Action::Receive)
    }

    /// Declares that the service publishes the typed event `T`: a send operation on `T`'s
    /// routing key, with `T`'s schema.
    pub fn publishes<T: TypedEvent + JsonSchema>(self) -> Self {
        self.declare::<T>(Action::Send)
    }

    /// Declares that the service publishes events with routing key `key` and no type (their
    /// `data` is any object). Checked by [`build`](Self::build).
    pub fn publishes_key(mut self, key: &str) -> Self {
        self.published_keys.push(key.to_owned());
        self
    }

    fn declare<T: TypedEvent + JsonSchema>(mut self, action: Action) -> Self {
        // One name per type: another type of the same schema name gets a number.
        let id = T::schema_id();
        let name = match self.payloads.iter().find(|p| p.type_id == id) {
            Some(known) => known.name.clone(),
            None => {
                let base = T::schema_name();
                let mut name = base.to_string();
                let mut n = 1;
                while self.payloads.iter().any(|p| p.name == name) {
                    n += 1;
                    name = format!("{base}_{n}");
                }
                let schema = self.generator.subschema_for::<Body<T>>().to_value();
                self.payloads.push(Payload {
                    type_id: id.into_owned(),
                    name: name.clone(),
                    schema,
                });
                name
            }
        };
        let declared = Declared {
            name,
            key: T::routing_key(),
            action,
        };
        if !self.declared.contains(&declared) {
            self.declared.push(declared);
        }
        self
    }

    /// Writes the document.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyName`] for an empty service or exchange name, [`Error::Pattern`] for a
    /// subscription pattern that does not parse, [`Error::NotSubscribed`] for a type declared
    /// received that no subscription matches, [`Error::InvalidRoutingKey`] for a published
    /// key that is not `domain.action` or `domain.action.vN`, [`Error::InvalidServer`] for a
    /// server whose name or host will not do.
    pub fn build(mut self) -> Result<Document> {
        for (field, value) in [("service", &self.service), ("exchange", &self.exchange)] {
            if value.is_empty() {
                return Err(Error::EmptyName { field });
            }
        }
        let mut servers = Map::new();
        for (name, host) in &self.servers {
            let (protocol, host) = server(name, host)?;
            if servers.contains_key(name) {
                return Err(Error::InvalidServer {
                    name: name.clone(),
                    reason: "another server has that name",
                });
            }
            servers.insert(
                name.clone(),
                json!({
                    "host": host,
                    "protocol": protocol,
                    "protocolVersion": "0.9.1",
                    "pathname": self.vhost,
                }),
            );
        }
        let plan = plan::plan(&Inputs {
            subscriptions: &self.subscriptions,
            declared: &self.declared,
            published_keys: &self.published_keys,
        })?;
        let any_payload = if plan.messages.iter().any(|m| m.kind == Kind::Any) {
            Some(self.generator.subschema_for::<Event>().to_value())
        } else {
            None
        };
        let headers = if plan.messages.is_empty() {
            Value::Null
        } else {
            self.generator.subschema_for::<Headers>().to_value()
        };
        let schemas = self.generator.take_definitions(true);
        let mut value = self.render(&plan, any_payload, &headers, schemas);
        if !servers.is_empty() {
            value["servers"] = servers.into();
        }
        Ok(Document { value })
    }

    fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or(&self.service)
    }

    fn render(
        &self,
        plan: &Plan,
        any_payload: Option<Value>,
        headers: &Value,
        schemas: Map<String, Value>,
    ) -> Value {
        let queue = self.queue_name();
        let receives = plan.operations.iter().any(|o| o.action == Action::Receive);
        let description = self.description.clone().unwrap_or_else(|| {
            let mut text = format!(
                "The events of service `{}` on RabbitMQ topic exchange `{}`.",
                self.service, self.exchange
            );
            if receives {
                text.push_str(&format!(
                    " It consumes from its durable queue `{queue}`, bound with the address of \
                     every channel it receives from."
                ));
            }
            text
        });

        let mut channels = Map::new();
        for (i, channel) in plan.channels.iter().enumerate() {
            let mut text = Vec::new();
            for op in plan.operations.iter().filter(|o| o.channel == i) {
                text.push(match op.action {
                    Action::Receive => format!(
                        "Queue `{queue}` is bound to exchange `{}` with `{}`.",
                        self.exchange, channel.address
                    ),
                    Action::Send => format!(
                        "`{}` publishes to exchange `{}` with routing key `{}`.",
                        self.service, self.exchange, channel.address
                    ),
                });
            }
            let messages: Map<String, Value> = channel
                .messages
                .iter()
                .map(|&m| {
                    let id = &plan.messages[m].id;
                    (
                        id.clone(),
                        reference(&format!("#/components/messages/{id}")),
                    )
                })
                .collect();
            channels.insert(
                channel.id.clone(),
                json!({
                    "address": channel.address,
                    "description": text.join(" "),
                    "messages": messages,
                    "bindings": { "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": self.exchange,
                            "type": "topic",
                            "durable": true,
                            "autoDelete": false,
                            "vhost": self.vhost,
                        },
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }},
                }),
            );
        }

        let mut operations = Map::new();
        for op in &plan.operations {
            let channel = &plan.channels[op.channel];
            let (summary, binding) = match op.action {
                Action::Receive => (
                    format!("Consumes `{}` from queue `{queue}`.", channel.address),
                    // Acked once every matching handler succeeded; retried or dead-lettered
                    // otherwise.
                    json!({ "ack": true, "bindingVersion": AMQP_BINDING_VERSION }),
                ),
                Action::Send => (
                    format!("Publishes `{}`, confirmed by the broker.", channel.address),
                    json!({
                        "deliveryMode": 2,
                        "mandatory": self.mandatory,
                        "timestamp": true,
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }),
                ),
            };
            let messages: Vec<Value> = op
                .messages
                .iter()
                .map(|&m| {
                    reference(&format!(
                        "#/channels/{}/messages/{}",
                        channel.id, plan.messages[m].id
                    ))
                })
                .collect();
            operations.insert(
                op.id.clone(),
                json!({
                    "action": op.action.as_str(),
                    "channel": reference(&format!("#/channels/{}", channel.id)),
                    "messages": messages,
                    "summary": summary,
                    "bindings": { "amqp": binding },
                }),
            );
        }

        let mut messages = Map::new();
        for message in &plan.messages {
            let (title, summary, payload, key) = match &message.kind {
                Kind::Typed { name, key } => (
                    name.clone(),
                    format!("`{key}`: its `data` is `{name}`."),
                    self.payloads
                        .iter()
                        .find(|p| p.name == *name)
                        .map(|p| p.schema.clone())
                        .unwrap_or_else(|| body_schema(None, None, None, any_object()).to_value()),
                    Some(key),
                ),
                Kind::Key(key) => {
                    let (domain, action, major) = match key_parts(key) {
                        Some((d, a, m)) => (Some(d), Some(a), m),
                        None => (None, None, None),
                    };
                    (
                        key.clone(),
                        format!("Any event with routing key `{key}` (no schema for its `data`)."),
                        body_schema(domain, action, major, any_object()).to_value(),
                        Some(key),
                    )
                }
                Kind::Any => (
                    "Event".to_owned(),
                    "Any event (its routing key is `domain.action`).".to_owned(),
                    any_payload
                        .clone()
                        .unwrap_or_else(|| body_schema(None, None, None, any_object()).to_value()),
                    None,
                ),
            };
            let mut binding = json!({ "bindingVersion": AMQP_BINDING_VERSION });
            if let Some(key) = key {
                // The publisher sets the AMQP `type` property to the routing key.
                binding["messageType"] = key.clone().into();
            }
            messages.insert(
                message.id.clone(),
                json!({
                    "name": message.id,
                    "title": title,
                    "summary": summary,
                    "contentType": "application/json",
                    "headers": headers,
                    "payload": payload,
                    "bindings": { "amqp": binding },
                }),
            );
        }

        let mut document = json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": self.service,
                "version": self.version,
                "description": description,
            },
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
        });
        let mut components = Map::new();
        if !messages.is_empty() {
            components.insert("messages".into(), messages.into());
        }
        if !schemas.is_empty() {
            components.insert("schemas".into(), schemas.into());
        }
        if !components.is_empty() {
            document["components"] = components.into();
        }
        document
    }
}

/// A server's protocol and host (`host[:port]`) from what was given: `host[:port]`, or an
/// `amqp://` or `amqps://` URL without credentials, path or query.
fn server<'a>(name: &str, given: &'a str) -> Result<(&'static str, &'a str)> {
    let invalid = |reason: &'static str| Error::InvalidServer {
        name: pubsub_core::text::truncate_chars(name, 80),
        reason,
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "a server's name is letters, digits, '_' and '-' (AsyncAPI's rule)",
        ));
    }
    let (protocol, host) = match given.split_once("://") {
        Some(("amqp", rest)) => ("amqp", rest),
        Some(("amqps", rest)) => ("amqps", rest),
        Some(_) => return Err(invalid("a server's URL scheme is amqp:// or amqps://")),
        None => ("amqp", given),
    };
    if host.contains('@') {
        // Never a password in a document.
        return Err(invalid(
            "a server's host must not carry credentials (user:password@)",
        ));
    }
    if host.is_empty() || host.contains(['/', '?', '#']) || host.contains(char::is_whitespace) {
        return Err(invalid(
            "a server's host is host[:port], without a path or query (the vhost is set apart)",
        ));
    }
    Ok((protocol, host))
}

/// The body schema of a declared type.
#[derive(Debug, Clone)]
struct Payload {
    /// The type's `JsonSchema::schema_id`: which type.
    type_id: String,
    /// Its message's name: its schema name, numbered if another type has it.
    name: String,
    /// The schema: a `$ref` into the document's schemas.
    schema: Value,
}

/// A `$ref` object.
fn reference(target: &str) -> Value {
    json!({ "$ref": target })
}

/// An AsyncAPI 3 document; `Display` writes it as pretty JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    value: Value,
}

impl Document {
    /// The document as JSON.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// The document as JSON, owned.
    pub fn into_value(self) -> Value {
        self.value
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        let check = |name: &str, given: &str, expected: std::result::Result<(&str, &str), &str>| {
            let got = server(name, given).map_err(|e| e.to_string());
            match expected {
                Ok(ok) => assert_eq!(got, Ok(ok), "{name} {given}"),
                Err(needle) => {
                    let err = got.unwrap_err();
                    assert!(err.contains(needle), "{name} {given}: {err}");
                }
            }
        };
        check(
            "production",
            "rabbit.internal:5672",
            Ok(("amqp", "rabbit.internal:5672")),
        );
        check("prod-1", "amqp://rabbit", Ok(("amqp", "rabbit")));
        check(
            "tls_prod",
            "amqps://rabbit:5671",
            Ok(("amqps", "rabbit:5671")),
        );
        check(
            "p",
            "amqp://guest:secret@rabbit",
            Err("must not carry credentials"),
        );
        check("p", "http://rabbit", Err("amqp:// or amqps://"));
        check("p", "amqp://rabbit/%2f", Err("without a path"));
        check("p", "", Err("host[:port]"));
        check("p q", "rabbit", Err("letters, digits"));
        check("", "rabbit", Err("letters, digits"));
    }

    #[test]
    fn a_document_names_servers_only_when_asked() {
        let plain = AsyncApi::new("s", "x").build().unwrap();
        assert_eq!(plain.as_value().get("servers"), None);
        let doc = AsyncApi::new("s", "x")
            .vhost("shop")
            .server("production", "amqps://rabbit:5671")
            .build()
            .unwrap();
        assert_eq!(
            doc.as_value()["servers"]["production"],
            json!({"host": "rabbit:5671", "protocol": "amqps", "protocolVersion": "0.9.1",
                   "pathname": "shop"})
        );
        let twice = AsyncApi::new("s", "x")
            .server("a", "h1")
            .server("a", "h2")
            .build()
            .unwrap_err();
        assert!(twice.to_string().contains("another server"), "{twice}");
    }
}
