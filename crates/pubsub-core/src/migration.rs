//! [`Migration`]: one fact in two versions, for publishing both while consumers migrate.

use crate::error::{Error, Result};
use crate::event::Event;
use crate::typed::TypedEvent;

/// The same fact as the old and the new version of an event, to be published together
/// during a migration, as seed 002 describes for a breaking change: the new version gets a
/// new routing key (`resource.accessed.v2`), both are published until every consumer has
/// moved, then the old one is dropped.
///
/// Both events carry the same event id and timestamp: they are one fact, so a consumer that
/// deduplicates by event id handles it once even when it listens to both keys.
/// `pubsub-publisher`'s `EventPublisher::publish_migration` publishes the pair in one
/// confirmed batch.
///
/// ```
/// use pubsub_core::{Migration, TypedEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Accessed { resource_id: String }
/// impl TypedEvent for Accessed {
///     const DOMAIN: &'static str = "resource";
///     const ACTION: &'static str = "accessed";
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct AccessedV2 { resource_id: String, resource_name: String }
/// impl TypedEvent for AccessedV2 {
///     const DOMAIN: &'static str = "resource";
///     const ACTION: &'static str = "accessed";
///     const VERSION: &'static str = "2.0";
///     const VERSIONED_KEY: bool = true;
/// }
///
/// let migration = Migration::new(
///     &Accessed { resource_id: "r-1".into() },
///     &AccessedV2 { resource_id: "r-1".into(), resource_name: "Report".into() },
/// )?;
/// let [old, new] = migration.events();
/// assert_eq!(old.routing_key(), "resource.accessed");
/// assert_eq!(new.routing_key(), "resource.accessed.v2");
/// assert_eq!(old.event_id(), new.event_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    events: [Event; 2],
}

impl Migration {
    /// The old and the new typed version of one fact.
    ///
    /// # Errors
    ///
    /// As [`Event::from_typed`], and as [`from_events`](Self::from_events).
    pub fn new<Old: TypedEvent, New: TypedEvent>(old: &Old, new: &New) -> Result<Migration> {
        Migration::from_events(Event::from_typed(old)?, Event::from_typed(new)?)
    }

    /// The old and the new version of one fact, as events; the new one takes the old one's
    /// event id and timestamp.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaMismatch`] when their domain or action differ (they are not versions of
    /// one event), [`Error::InvalidField`] for `routing_key` when both have the same routing
    /// key (consumers could not tell them apart).
    pub fn from_events(old: Event, new: Event) -> Result<Migration> {
        if old.domain() != new.domain() || old.action() != new.action() {
            return Err(Error::SchemaMismatch {
                expected: format!("{}.{}", old.domain(), old.action()),
                found: format!("{}.{}", new.domain(), new.action()),
            });
        }
        if old.routing_key() == new.routing_key() {
            return Err(Error::invalid(
                "routing_key",
                old.routing_key(),
                "both versions have this routing key: give the new one a versioned key (domain.action.vN)",
            ));
        }
        let mut builder = Event::builder(new.domain(), new.action())
            .version(new.version())
            .event_id(old.event_id())
            .timestamp(old.timestamp());
        if let Some(n) = new.key_version() {
            builder = builder.key_version(n);
        }
        let new = builder.data_map(new.into_data()).build()?;
        Ok(Migration { events: [old, new] })
    }

    /// The two events, old then new.
    pub fn events(&self) -> &[Event; 2] {
        &self.events
    }

    /// The old version.
    pub fn old(&self) -> &Event {
        &self.events[0]
    }

    /// The new version.
    pub fn new_version(&self) -> &Event {
        &self.events[1]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pairs_share_the_fact_and_differ_by_key() {
        let old = Event::new("a", "b", json!({"x": 1})).unwrap();
        let new = Event::builder("a", "b")
            .key_version(2)
            .data(json!({"x": 1, "y": 2}))
            .build()
            .unwrap();
        let m = Migration::from_events(old.clone(), new).unwrap();
        assert_eq!(m.old(), &old);
        assert_eq!(m.new_version().event_id(), old.event_id());
        assert_eq!(m.new_version().timestamp(), old.timestamp());
        assert_eq!(m.new_version().routing_key(), "a.b.v2");
        assert_eq!(m.new_version().version(), "2.0");
        assert_eq!(m.new_version().data()["y"], 2);

        let other = Event::builder("a", "c").key_version(2).build().unwrap();
        assert!(matches!(
            Migration::from_events(old.clone(), other),
            Err(Error::SchemaMismatch { .. })
        ));
        let same_key = Event::builder("a", "b").version("2.0").build().unwrap();
        assert!(matches!(
            Migration::from_events(old, same_key),
            Err(Error::InvalidField {
                field: "routing_key",
                ..
            })
        ));
    }
}
