//! The task statements of the PostgreSQL backend, their text built once.

use std::sync::LazyLock;

use uuid::Uuid;

use crate::filter::TASK_COLUMNS;

/// Inserts a received task unless its id is stored, and returns its record either way,
/// in one round trip.
pub(super) static RECEIVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH new AS (INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
         routing_key, correlation_id, producer, created_at, updated_at, originals, \
         time_limit_ms) \
         VALUES ($1, $2, $3, 'PENDING', 0, $4, $5, $6, $7, $7, $8, $9) \
         ON CONFLICT (task_id) DO NOTHING RETURNING {TASK_COLUMNS}) \
         SELECT {TASK_COLUMNS} FROM new UNION ALL \
         SELECT {TASK_COLUMNS} FROM pubsub_tasks WHERE task_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM new)"
    )
});
/// What an admission does to a task stored before: started again, one attempt more,
/// unless it is COMPLETED or CANCELLED; a task that was RUNNING gets a note in its error
/// (its attempt never finished).
const ADMIT_AGAIN: &str = "status = 'RUNNING', attempts = pubsub_tasks.attempts + 1, \
    updated_at = EXCLUDED.updated_at, started_at = EXCLUDED.started_at, finished_at = NULL, \
    time_limit_ms = EXCLUDED.time_limit_ms, \
    error = CASE WHEN pubsub_tasks.status = 'RUNNING' THEN 'attempt ' || pubsub_tasks.attempts \
    || ' was interrupted: its worker stopped while running it (or another worker runs it now)' \
    ELSE pubsub_tasks.error END, \
    error_original = CASE WHEN pubsub_tasks.status = 'RUNNING' THEN NULL \
    ELSE pubsub_tasks.error_original END \
    WHERE pubsub_tasks.status NOT IN ('COMPLETED', 'CANCELLED')";
/// Cancels a task that has not started, recorded even before a worker received it.
pub(super) static CANCEL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
         routing_key, created_at, updated_at, finished_at) \
         VALUES ($1, '', '{{}}', 'CANCELLED', 0, '', $2, $2, $2) \
         ON CONFLICT (task_id) DO UPDATE SET status = 'CANCELLED', \
         updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at \
         WHERE pubsub_tasks.status = 'PENDING' RETURNING {TASK_COLUMNS}"
    )
});
/// Receives a task and starts it unless it is `COMPLETED`, in one round trip.
pub(super) static ADMIT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
         routing_key, correlation_id, producer, created_at, updated_at, originals, started_at, \
         time_limit_ms) \
         VALUES ($1, $2, $3, 'RUNNING', 1, $4, $5, $6, $7, $7, $8, $7, $9) \
         ON CONFLICT (task_id) DO UPDATE SET {ADMIT_AGAIN} RETURNING {TASK_COLUMNS}"
    )
});
pub(super) static START: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE pubsub_tasks SET status = $2, attempts = attempts + 1, updated_at = $3, \
         started_at = $3, finished_at = NULL WHERE task_id = $1 RETURNING {TASK_COLUMNS}"
    )
});
pub(super) static COMPLETE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE pubsub_tasks SET status = $2, result = $3, result_original = $5, \
         error = NULL, error_original = NULL, updated_at = $4, finished_at = $4 \
         WHERE task_id = $1 RETURNING {TASK_COLUMNS}"
    )
});
pub(super) static FAIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE pubsub_tasks SET status = $2, error = $3, error_original = $5, \
         updated_at = $4, finished_at = CASE WHEN $2 = 'FAILED' THEN $4::timestamptz END \
         WHERE task_id = $1 RETURNING {TASK_COLUMNS}"
    )
});
/// The status and attempts of a batch of ids, the rows locked until the transaction
/// ends (in the order of their ids, as every worker locks them).
pub(super) const CLAIM_ALL: &str = "SELECT task_id, status, attempts FROM pubsub_tasks \
    WHERE task_id = ANY($1) ORDER BY task_id FOR UPDATE";
/// `BEGIN`, then [`CLAIM_ALL`] of `ids` written out: one simple query, one round trip where
/// `BEGIN` and the claim, unprepared, take three (see `change_tasks` for why the claim is
/// not prepared). The ids are literals (a [`Uuid`]'s text is hex digits and hyphens), and
/// the statement is planned for them.
pub(super) fn begin_claim(ids: &[Uuid]) -> String {
    let mut sql = String::with_capacity(120 + ids.len() * 39);
    sql.push_str("BEGIN; SELECT task_id, status, attempts FROM pubsub_tasks WHERE task_id IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('\'');
        sql.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        sql.push('\'');
    }
    sql.push_str(") ORDER BY task_id FOR UPDATE");
    sql
}
/// A batch of runs, each row written once with its outcome (see `record_runs`); returns
/// the ids written (not those COMPLETED or CANCELLED meanwhile).
pub(super) const RECORD_ALL: &str = "INSERT INTO pubsub_tasks (task_id, task_name, payload, \
    status, attempts, routing_key, correlation_id, producer, created_at, updated_at, \
    originals, time_limit_ms, started_at, finished_at, result, result_original, error, \
    error_original) \
    SELECT id, name, payload, status, 1, key, correlation, producer, $15::timestamptz, $15, \
    original, \
    time_limit, started, CASE WHEN status IN ('COMPLETED', 'FAILED') THEN $15::timestamptz END, \
    result, result_original, error, error_original \
    FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], \
    $7::text[], $8::bigint[], $9::text[], $10::timestamptz[], $11::jsonb[], $12::text[], \
    $13::text[], $14::text[]) AS t(id, name, payload, key, correlation, producer, original, \
    time_limit, status, started, result, result_original, error, error_original) \
    ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status, \
    attempts = pubsub_tasks.attempts + 1, updated_at = EXCLUDED.updated_at, \
    time_limit_ms = EXCLUDED.time_limit_ms, started_at = EXCLUDED.started_at, \
    finished_at = EXCLUDED.finished_at, result = EXCLUDED.result, \
    result_original = EXCLUDED.result_original, error = EXCLUDED.error, \
    error_original = EXCLUDED.error_original \
    WHERE pubsub_tasks.status NOT IN ('COMPLETED', 'CANCELLED') RETURNING task_id";
/// COMPLETED, for a batch of tasks with their results.
pub(super) const COMPLETE_ALL: &str = "UPDATE pubsub_tasks AS t SET status = 'COMPLETED', \
    result = u.result, result_original = u.original, error = NULL, error_original = NULL, \
    updated_at = $4, finished_at = $4 \
    FROM UNNEST($1::uuid[], $2::jsonb[], $3::text[]) AS u(id, result, original) \
    WHERE t.task_id = u.id";
/// PENDING (a retry waits) or FAILED, for a batch of tasks with their errors.
pub(super) const FAIL_ALL: &str = "UPDATE pubsub_tasks AS t SET status = u.status, \
    error = u.error, error_original = u.original, updated_at = $5, \
    finished_at = CASE WHEN u.status = 'FAILED' THEN $5::timestamptz END \
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) \
    AS u(id, status, error, original) WHERE t.task_id = u.id";
pub(super) static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TASK_COLUMNS} FROM pubsub_tasks WHERE task_id = $1"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_with_its_begin_names_each_id_as_a_literal() {
        let [a, b] = [1u128, 0xab].map(Uuid::from_u128);
        let sql = begin_claim(&[a, b]);
        assert!(sql.starts_with("BEGIN; SELECT task_id, status, attempts FROM pubsub_tasks"));
        assert!(sql.contains(
            "IN ('00000000-0000-0000-0000-000000000001','00000000-0000-0000-0000-0000000000ab')"
        ));
        assert!(sql.ends_with("ORDER BY task_id FOR UPDATE"));
    }
}
