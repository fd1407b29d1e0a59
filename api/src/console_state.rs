//! What the console's pages share between viewers in one api process (a
//! module of its own so that the application state can hold it without
//! depending on the console's pages).

use chrono::{DateTime, Utc};
use switchyard_engine::{Counts, MinuteStat, Stats};

/// Shared between the console's viewers.
#[derive(Debug, Default)]
pub struct ConsoleShared {
    /// The overview's last reading and when it was taken: its counts scan
    /// every task, so one reading serves every viewer for a while.
    pub(crate) overview: tokio::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, OverviewReading)>>,
}

/// The overview's figures, as read at `at`.
#[derive(Debug, Clone)]
pub(crate) struct OverviewReading {
    pub(crate) counts: Counts,
    pub(crate) minutes: Vec<MinuteStat>,
    pub(crate) stats: Stats,
    pub(crate) at: DateTime<Utc>,
}
