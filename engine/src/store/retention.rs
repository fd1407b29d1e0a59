//! Retention: what has been finished for long enough is deleted, oldest
//! first, in batches small enough that no lock is held for long and live
//! work never waits on a sweep.
//!
//! On PostgreSQL the event log is partitioned into windows of task
//! creation time (task ids are UUIDv7, so a window is a range of ids):
//! windows are created ahead of the clock, and a window all of whose tasks
//! were deleted is dropped whole instead of deleted row by row. The tasks
//! of a window that are still kept when it expires (open, or finished
//! recently) have their events moved out first, if there are few enough.

use std::time::Duration;

use uuid::Uuid;

use super::Store;
use crate::error::StoreError;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Finished top-level tasks, each with its log, jobs, checkpoint, push
    /// configs, idempotency keys and children (which go with their root).
    pub tasks: u64,
    /// Done jobs of tasks that are still kept.
    pub jobs: u64,
    /// Log rows of deleted tasks that lay outside any window, deleted one by one.
    pub log_orphans: u64,
    /// Windows of the log made, dropped, and the events of kept tasks moved
    /// out of dropped windows.
    pub log: LogRotation,
}

/// What one pass over the log's windows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRotation {
    pub created: u64,
    pub dropped: u64,
    pub moved: u64,
}

/// One partition of the event log: the tasks whose ids lie in `[from, to)`,
/// i.e. created in that window of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogWindow {
    pub(crate) name: String,
    pub(crate) from: Uuid,
    pub(crate) to: Uuid,
}

/// The log's windows as the database has them, with the database's clock.
#[derive(Debug, Clone)]
pub(crate) struct LogWindows {
    pub(crate) now_ms: i64,
    pub(crate) windows: Vec<LogWindow>,
}

/// How many windows beyond the current one are kept ready, so that a
/// store whose workers are all down for a while still logs into windows.
const AHEAD: i64 = 3;

/// A window past retention is dropped only if at most this many of its
/// tasks are still kept: their events are moved while the log is locked.
const MOST_KEPT: i64 = 1000;

super::seam::statements! {
    room retention;
    /// Deletes at most `batch` top-level tasks that finished more than
    /// `older_than` ago (rows others hold are skipped); how many it did.
    db fn sweep_tasks(older_than: Duration, batch: i64) -> u64;
    /// Deletes at most `batch` done jobs that finished that long ago.
    db fn sweep_jobs(older_than: Duration, batch: i64) -> u64;
    /// The log's windows and the database's time, or `None` where the log
    /// is not partitioned (the embedded store: deletes cascade into it).
    db fn log_windows() -> Option<LogWindows>;
    /// Makes `window` a partition of the log; `false` when it could not be
    /// made now (another process made or is making it, or the default
    /// partition already holds rows of its range).
    db fn log_window_create(window: &LogWindow) -> bool;
    /// Drops `window`, first moving the events of its tasks that are still
    /// kept to the default partition; `None` (nothing done) when more than
    /// `most_kept` are kept or the log's lock was not had at once.
    db fn log_window_drop(window: &LogWindow, most_kept: i64) -> Option<u64>;
    /// Deletes the log rows outside every window of at most `batch` tasks
    /// that are gone; how many rows.
    db fn log_orphans_sweep(batch: i64) -> u64;
}

impl Store {
    /// Deletes tasks that finished more than `older_than` ago, and done jobs
    /// that finished that long ago, `batch` rows per statement (each its own
    /// transaction, rows others hold are skipped), until a batch comes back
    /// short or `max_batches` have run; then drops the log's windows that
    /// are past `older_than` and makes the ones ahead.
    pub async fn retention_sweep(
        &self,
        older_than: Duration,
        batch: i64,
        max_batches: u32,
    ) -> Result<Swept, StoreError> {
        let tasks = in_batches(batch, max_batches, || self.db.sweep_tasks(older_than, batch)).await?;
        let jobs = in_batches(batch, max_batches, || self.db.sweep_jobs(older_than, batch)).await?;
        let log_orphans = in_batches(batch, max_batches, || self.db.log_orphans_sweep(batch)).await?;
        let log = self.log_rotate(Some(older_than)).await?;
        Ok(Swept { tasks, jobs, log_orphans, log })
    }

    /// Makes the log's windows for now and the next few, and with
    /// `older_than` drops those that ended longer ago than that. Run at
    /// migration and by every worker's sweep; several at once only find
    /// each other's work done.
    pub async fn log_rotate(&self, older_than: Option<Duration>) -> Result<LogRotation, StoreError> {
        let Some(LogWindows { now_ms, mut windows }) = self.db.log_windows().await? else {
            return Ok(LogRotation::default());
        };
        let mut rotation = LogRotation::default();
        let width = i64::try_from(self.log_window.as_millis()).unwrap_or(i64::MAX).max(1000);
        for window in windows_to_create(now_ms, width, &windows) {
            if self.db.log_window_create(&window).await? {
                rotation.created += 1;
                windows.push(window);
            }
        }
        if let Some(older_than) = older_than {
            let cutoff = now_ms - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX / 2);
            for window in windows.iter().filter(|w| ms_of(w.to) <= cutoff) {
                if let Some(moved) = self.db.log_window_drop(window, MOST_KEPT).await? {
                    rotation.dropped += 1;
                    rotation.moved += moved;
                }
            }
        }
        Ok(rotation)
    }
}

/// The UUIDv7 lower bound of a millisecond: its time, nothing else.
pub(crate) fn uuid_at(ms: i64) -> Uuid {
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The millisecond a UUIDv7 (or bound) starts at.
pub(crate) fn ms_of(id: Uuid) -> i64 {
    let b = id.as_bytes();
    i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// The windows to make so that `[now, now + AHEAD more widths)` is covered:
/// windows aligned to multiples of `width` since the epoch, each cut short
/// where an existing window already covers part of it (a window made with
/// another width, or the history partition ending mid-window), none
/// overlapping what exists.
pub(crate) fn windows_to_create(now_ms: i64, width: i64, existing: &[LogWindow]) -> Vec<LogWindow> {
    let mut taken: Vec<(i64, i64)> = existing.iter().map(|w| (ms_of(w.from), ms_of(w.to))).collect();
    let mut made = Vec::new();
    let first = now_ms.div_euclid(width) * width;
    for k in 0..=AHEAD {
        let (a, b) = (first + k * width, first + (k + 1) * width);
        // Start after whatever covers the window's beginning; end before
        // whatever starts inside it.
        let start = taken.iter().filter(|(lo, hi)| *lo <= a && *hi > a).map(|(_, hi)| *hi).max().unwrap_or(a);
        if start >= b {
            continue;
        }
        let end = taken.iter().filter(|(lo, _)| *lo >= start && *lo < b).map(|(lo, _)| *lo).min().unwrap_or(b);
        if start < end && !taken.iter().any(|(lo, hi)| *lo < end && *hi > start) {
            taken.push((start, end));
            made.push(LogWindow { name: window_name(start), from: uuid_at(start), to: uuid_at(end) });
        }
    }
    made
}

/// `task_events_20261207_000000_000`: the window's first millisecond, UTC.
fn window_name(from_ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(from_ms).unwrap_or_default();
    format!("task_events_{}", at.format("%Y%m%d_%H%M%S_%3f"))
}

/// Runs `delete` (one batch of at most `batch` rows) until a batch comes back
/// short or `max_batches` have run; the rows deleted in all.
async fn in_batches<F, Fut>(batch: i64, max_batches: u32, mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    for _ in 0..max_batches {
        let deleted = delete().await?;
        total += deleted;
        if deleted < batch.unsigned_abs() {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn window(from: i64, to: i64) -> LogWindow {
        LogWindow { name: window_name(from), from: uuid_at(from), to: uuid_at(to) }
    }

    fn spans(windows: &[LogWindow]) -> Vec<(i64, i64)> {
        windows.iter().map(|w| (ms_of(w.from), ms_of(w.to))).collect()
    }

    #[test]
    fn a_bound_is_the_uuidv7_of_its_millisecond() {
        let id = Uuid::now_v7();
        let ms = ms_of(id);
        assert!(uuid_at(ms) <= id && id < uuid_at(ms + 1), "an id lies in its millisecond's window");
        assert_eq!(ms_of(uuid_at(1_765_000_000_123)), 1_765_000_000_123);
        assert_eq!(uuid_at(0), Uuid::nil());
        assert_eq!(uuid_at(DAY).to_string(), "00000526-5c00-0000-0000-000000000000");
    }

    #[test]
    fn an_empty_log_gets_the_current_window_and_three_ahead() {
        let now = 20_000 * DAY + 5_000;
        let made = windows_to_create(now, DAY, &[]);
        let want: Vec<(i64, i64)> = (0..4).map(|k| ((20_000 + k) * DAY, (20_001 + k) * DAY)).collect();
        assert_eq!(spans(&made), want);
        assert_eq!(made[0].name, "task_events_20241004_000000_000");
    }

    #[test]
    fn what_exists_is_not_made_again() {
        let now = 20_000 * DAY + 5_000;
        let existing = vec![window(20_000 * DAY, 20_001 * DAY), window(20_001 * DAY, 20_002 * DAY)];
        assert_eq!(
            spans(&windows_to_create(now, DAY, &existing)),
            [(20_002 * DAY, 20_003 * DAY), (20_003 * DAY, 20_004 * DAY)]
        );
        let all: Vec<LogWindow> = (0..4).map(|k| window((20_000 + k) * DAY, (20_001 + k) * DAY)).collect();
        assert!(windows_to_create(now, DAY, &all).is_empty());
    }

    #[test]
    fn a_window_begins_where_the_history_ends() {
        // The migration's history partition ends at the moment it ran.
        let now = 20_000 * DAY + 3_600_000;
        let history = LogWindow { name: "task_events_history".into(), from: Uuid::nil(), to: uuid_at(now - 10) };
        let made = windows_to_create(now, DAY, &[history]);
        assert_eq!(spans(&made)[0], (now - 10, 20_001 * DAY));
        assert_eq!(made.len(), 4);
    }

    #[test]
    fn a_narrower_width_fills_in_after_wider_windows() {
        let now = 20_000 * DAY + 5_000;
        let existing = vec![window(20_000 * DAY, 20_001 * DAY)];
        let hour = 3_600_000;
        let made = windows_to_create(now, hour, &existing);
        assert!(made.is_empty(), "the current day already covers the next hours: {:?}", spans(&made));
        let late = 20_001 * DAY - hour;
        assert_eq!(
            spans(&windows_to_create(late, hour, &existing)),
            [
                (20_001 * DAY, 20_001 * DAY + hour),
                (20_001 * DAY + hour, 20_001 * DAY + 2 * hour),
                (20_001 * DAY + 2 * hour, 20_001 * DAY + 3 * hour)
            ]
        );
    }

    #[test]
    fn a_window_stops_where_another_begins() {
        let now = 20_000 * DAY;
        let existing = vec![window(20_000 * DAY + 1000, 20_001 * DAY)];
        let made = windows_to_create(now, DAY, &existing);
        assert_eq!(spans(&made)[0], (20_000 * DAY, 20_000 * DAY + 1000));
    }
}
