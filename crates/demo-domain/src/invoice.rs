//! The `send-invoice` task: an invoice for an order, from the task's payload.

use pubsub_core::serde_json::{json, Value};

use crate::error::{Error, Result};

/// The name the demo's task worker registers [`send_invoice`] under.
pub const SEND_INVOICE: &str = "send-invoice";

/// Issues the invoice of the order in `payload` (`{"order_id": "ORD-123", "total": 99.99}`)
/// and returns it: `{"invoice_id": "INV-ORD-123", "order_id": ..., "total": ...}`.
///
/// # Errors
///
/// [`Error::InvalidTask`] when the payload has no `order_id` string or its `total` is not a
/// non-negative number: retrying cannot fix it.
///
/// ```
/// use demo_domain::send_invoice;
/// use serde_json::json;
///
/// let invoice = send_invoice(&json!({ "order_id": "ORD-123", "total": 99.99 }))?;
/// assert_eq!(invoice["invoice_id"], "INV-ORD-123");
/// assert!(send_invoice(&json!({ "total": 1 })).is_err());
/// # Ok::<(), demo_domain::Error>(())
/// ```
pub fn send_invoice(payload: &Value) -> Result<Value> {
    let order_id = payload
        .get("order_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            Error::invalid_task(SEND_INVOICE, "`order_id` must be a non-empty string")
        })?;
    let total = match payload.get("total") {
        None => 0.0,
        Some(total) => total
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                Error::invalid_task(SEND_INVOICE, "`total` must be a non-negative number")
            })?,
    };
    log::info!("invoice INV-{order_id} issued for {total:.2}");
    Ok(json!({
        "invoice_id": format!("INV-{order_id}"),
        "order_id": order_id,
        "total": total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoices_and_refusals() {
        let ok = send_invoice(&json!({ "order_id": "A-1", "total": 5 })).unwrap();
        assert_eq!(
            ok,
            json!({ "invoice_id": "INV-A-1", "order_id": "A-1", "total": 5.0 })
        );
        assert_eq!(
            send_invoice(&json!({ "order_id": "A-2" })).unwrap()["total"],
            0.0
        );
        for bad in [
            json!({}),
            json!({ "order_id": "" }),
            json!({ "order_id": 7 }),
            json!({ "order_id": "A", "total": -1 }),
            json!({ "order_id": "A", "total": "lots" }),
        ] {
            assert!(send_invoice(&bad).is_err(), "{bad}");
        }
    }
}
