//! Trace context in message headers: the W3C `traceparent` and `tracestate` headers
//! (<https://www.w3.org/TR/trace-context/>), as every OpenTelemetry-instrumented client of
//! the broker writes them.
//!
//! The header names and [`TraceContext`] are always here; turning it into an OpenTelemetry
//! context and back (`TraceContext::of`, `TraceContext::to_context`) needs the `otel`
//! feature.

/// The header that carries the W3C `traceparent` (version, trace id, parent span id, flags).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The header that carries the W3C `tracestate` (vendors' key-value pairs), when there is one.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// A W3C trace context as it travels in message headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` header's value, e.g.
    /// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    pub traceparent: String,
    /// The `tracestate` header's value, when not empty.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A trace context read from headers, as received (an empty `tracestate` is none).
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> TraceContext {
        TraceContext {
            traceparent: traceparent.to_owned(),
            tracestate: tracestate.filter(|s| !s.is_empty()).map(str::to_owned),
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::Context;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::{TraceContext, TRACEPARENT_HEADER, TRACESTATE_HEADER};

    impl Injector for TraceContext {
        fn set(&mut self, key: &str, value: String) {
            match key {
                TRACEPARENT_HEADER => self.traceparent = value,
                TRACESTATE_HEADER if !value.is_empty() => self.tracestate = Some(value),
                _ => {}
            }
        }
    }

    impl Extractor for TraceContext {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT_HEADER => Some(self.traceparent.as_str()),
                TRACESTATE_HEADER => self.tracestate.as_deref(),
                _ => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT_HEADER, TRACESTATE_HEADER]
        }
    }

    impl TraceContext {
        /// The trace context of `cx`'s span, to send on; `None` when it has no valid span
        /// (no tracing, or tracing turned off), and then no header is written.
        pub fn of(cx: &Context) -> Option<TraceContext> {
            if !cx.span().span_context().is_valid() {
                return None;
            }
            let mut headers = TraceContext::default();
            TraceContextPropagator::new().inject_context(cx, &mut headers);
            (!headers.traceparent.is_empty()).then_some(headers)
        }

        /// The remote parent this context names, to continue the trace from; `None` when the
        /// `traceparent` is not valid (it then starts no trace, and breaks none).
        pub fn to_context(&self) -> Option<Context> {
            let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), self);
            cx.span().span_context().is_valid().then_some(cx)
        }
    }

    #[cfg(test)]
    mod tests {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

        use super::*;

        const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        fn remote(trace: u128, span: u64, state: &str) -> Context {
            let state = TraceState::from_key_value(
                state
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .filter_map(|kv| kv.split_once('=')),
            )
            .unwrap_or_default();
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                TraceFlags::SAMPLED,
                true,
                state,
            ))
        }

        #[test]
        fn contexts_become_headers() {
            let check = |cx: Context, expected: Option<(&str, Option<&str>)>| {
                let got = TraceContext::of(&cx);
                let got = got
                    .as_ref()
                    .map(|h| (h.traceparent.as_str(), h.tracestate.as_deref()));
                assert_eq!(got, expected);
            };
            check(Context::new(), None);
            check(
                remote(
                    0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                    0x00f0_67aa_0ba9_02b7,
                    "",
                ),
                Some((PARENT, None)),
            );
            check(
                remote(
                    0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                    0x00f0_67aa_0ba9_02b7,
                    "k=v",
                ),
                Some((PARENT, Some("k=v"))),
            );
            // An invalid (all-zero) trace id is no trace.
            check(remote(0, 1, ""), None);
        }

        #[test]
        fn headers_become_parents() {
            let check = |traceparent: &str, tracestate: Option<&str>, valid: bool| {
                let headers = TraceContext::from_headers(traceparent, tracestate);
                let cx = headers.to_context();
                assert_eq!(cx.is_some(), valid, "{traceparent:?}");
                if let Some(cx) = cx {
                    // What is received is sent on unchanged.
                    assert_eq!(TraceContext::of(&cx), Some(headers));
                    assert!(cx.span().span_context().is_remote());
                }
            };
            check(PARENT, None, true);
            check(PARENT, Some("a=1,b=2"), true);
            check(PARENT, Some(""), true);
            check("", None, false);
            check("garbage", None, false);
            check(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                None,
                false,
            );
            check(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                None,
                false,
            );
            check(
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                None,
                false,
            );
        }
    }
}
