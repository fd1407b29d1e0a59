//! Wake-ups, on the embedded store: kept with the transaction, broadcast
//! in-process after its COMMIT.

use super::LiteTx;
use crate::error::StoreError;

pub(in crate::store) async fn notify(tx: &mut LiteTx, channel: &str, payload: &str) -> Result<(), StoreError> {
    tx.notify(channel, payload);
    Ok(())
}
