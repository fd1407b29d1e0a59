//! ListTasks: a caller's tasks, filtered, newest status first, keyset-paginated.

use chrono::{DateTime, Utc};

use super::row::TaskRow;
use super::{Store, client_read};
use crate::error::StoreError;
use crate::id::{Caller, TaskId};
use crate::state::TaskState;
use crate::task::TaskRecord;

/// Filters that combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub context_id: Option<String>,
    pub state: Option<TaskState>,
    /// Keep tasks whose status changed at or after this instant.
    pub status_after: Option<DateTime<Utc>>,
    /// This task's children (fan-out members, pipeline steps); without it,
    /// only top-level tasks are listed.
    pub parent: Option<TaskId>,
}

/// Where a page starts: just after this (status time, id) in the ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub status_at: DateTime<Utc>,
    pub id: TaskId,
}

/// One page of tasks.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    /// Tasks matching the filter, across all pages.
    pub total: i64,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

super::seam::statements! {
    room list;
    /// At most `limit` of the caller's tasks matching `filter`, newest
    /// status first, after `after`.
    db fn tasks_page(
        caller: &Caller,
        filter: &TaskFilter,
        limit: i64,
        after: Option<Cursor>,
        with_artifacts: bool,
    ) -> Vec<TaskRow>;
    /// How many of the caller's tasks match `filter`.
    db fn tasks_count(caller: &Caller, filter: &TaskFilter) -> i64;
    db fn tasks_recent(tenant: Option<&str>, state: Option<TaskState>, limit: i64) -> Vec<TaskRow>;
    /// Oldest first, by position.
    db fn task_children(parent: TaskId) -> Vec<TaskRow>;
}

impl Store {
    /// A page of at most `page_size` of the caller's tasks, newest status
    /// first; their artifacts (folded from the log) only `with_artifacts`.
    pub async fn task_list(
        &self,
        caller: &Caller,
        filter: &TaskFilter,
        page_size: i64,
        after: Option<Cursor>,
        with_artifacts: bool,
    ) -> Result<TaskPage, StoreError> {
        // One more row than asked tells whether another page exists.
        let (rows, total) = client_read!(self, |db| async {
            let rows = db.tasks_page(caller, filter, page_size + 1, after, with_artifacts).await?;
            Ok((rows, db.tasks_count(caller, filter).await?))
        }
        .await)?;
        page(rows, total, page_size)
    }

    /// Recent tasks across every caller, for operators: newest status first,
    /// optionally one tenant's or one state's.
    pub async fn tasks_recent(
        &self,
        tenant: Option<&str>,
        state: Option<TaskState>,
        limit: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.db.tasks_recent(tenant, state, limit).await?.into_iter().map(TaskRecord::try_from).collect()
    }

    /// A task's children (fan-out branches and pipeline steps), oldest first.
    pub async fn task_children(&self, parent: TaskId) -> Result<Vec<TaskRecord>, StoreError> {
        self.db.task_children(parent).await?.into_iter().map(TaskRecord::try_from).collect()
    }
}

/// A page from `page_size + 1` rows: the extra one says another page exists.
fn page(rows: Vec<TaskRow>, total: i64, page_size: i64) -> Result<TaskPage, StoreError> {
    let mut tasks = rows.into_iter().map(TaskRecord::try_from).collect::<Result<Vec<_>, _>>()?;
    let next = if tasks.len() as i64 > page_size {
        tasks.truncate(page_size as usize);
        tasks.last().map(|t| Cursor { status_at: t.status_at, id: t.id })
    } else {
        None
    };
    Ok(TaskPage { tasks, total, next })
}
