//! Residents' contact details at intake's edge: sealed under the case's
//! data key before a filing is decided, opened again only to show them to
//! someone allowed to see them (masked for the others).

use gridcase_domain::{CaseId, Contact, ResidentContact};
use gridcase_envelope::sealing::{open_contact, seal_contact};
use gridcase_eventlog::{KeyState, KeyStore, KeyStoreError};
use gridcase_grpc::status;
use tonic::Status;

fn key_store_status(error: &KeyStoreError) -> Status {
    match error {
        KeyStoreError::Nats(_) => status::unavailable("the key store", error),
        _ => status::internal(error),
    }
}

/// Contact details in clear sealed under the case's key (made on the first
/// filing attempt, the same on its retries). `Err(None)`: the case's data
/// were erased, so the id is taken for good.
pub async fn seal(keys: &KeyStore, case_id: &CaseId, contact: Contact) -> Result<Contact, Option<Status>> {
    let Contact::Clear(clear) = contact else { return Ok(contact) };
    let key = match keys.key_for_new_case(case_id).await {
        Ok(key) => key,
        Err(KeyStoreError::Erased) => return Err(None),
        Err(error) => return Err(Some(key_store_status(&error))),
    };
    let sealed = seal_contact(&key, case_id, &clear).map_err(|e| Some(status::internal(&e)))?;
    Ok(Contact::Sealed(sealed))
}

/// Contact details as recorded, in clear; `None` when they were erased (or
/// their key is gone, which is the same).
pub async fn open(keys: &KeyStore, case_id: &CaseId, contact: &Contact) -> Result<Option<ResidentContact>, Status> {
    match contact {
        Contact::Clear(clear) => Ok(Some(clear.clone())),
        Contact::Sealed(sealed) => match keys.key(case_id).await.map_err(|e| key_store_status(&e))? {
            KeyState::Present(key) => open_contact(&key, case_id, sealed).map(Some).map_err(|e| status::internal(&e)),
            KeyState::Absent | KeyState::Erased => Ok(None),
        },
    }
}

/// Destroy the case's key (idempotent).
pub async fn erase(keys: &KeyStore, case_id: &CaseId) -> Result<(), Status> {
    keys.erase(case_id).await.map_err(|e| key_store_status(&e))
}
