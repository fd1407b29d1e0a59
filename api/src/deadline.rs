//! The deadline on a request's work on its store.

use std::future::Future;
use std::time::Duration;

use crate::error::ApiError;

/// The longest a request's work on its store may take, the waits it was
/// asked for aside. The store's sessions end a statement after 10 s
/// (`SessionLimits`), so this fires only when the store stops answering
/// altogether — a partition drops packets rather than refusing them, and
/// TCP would take many minutes to say so — and the caller is told
/// `UNAVAILABLE` rather than held. (A write cut off this way is either
/// committed or not; a resend with the same message id finds out which.)
pub const STORE_DEADLINE: Duration = Duration::from_secs(15);

/// `work`, within [`STORE_DEADLINE`].
pub(crate) fn bounded<'a, T: 'a>(
    work: impl Future<Output = Result<T, ApiError>> + 'a,
) -> impl Future<Output = Result<T, ApiError>> + 'a {
    bounded_for(STORE_DEADLINE, work)
}

/// `work`, within `limit`. Boxed at once: the request's own future, which
/// is moved as a whole, stays small.
pub(crate) fn bounded_for<'a, T: 'a>(
    limit: Duration,
    work: impl Future<Output = Result<T, ApiError>> + 'a,
) -> impl Future<Output = Result<T, ApiError>> + 'a {
    let work = Box::pin(work);
    async move {
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            tracing::warn!(?limit, "the store did not answer in time");
            metrics::counter!("switchyard_store_deadline_exceeded_total").increment(1);
            Err(ApiError::Unavailable)
        })
    }
}
