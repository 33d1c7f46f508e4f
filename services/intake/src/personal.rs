//! Residents' contact details at intake's edge: sealed under the case's
//! data key before a filing is decided, opened again only to show them to
//! someone allowed to see them (masked for the others).

use gridcase_auth::policy::ContactView;
use gridcase_domain::{CaseId, Contact, ContactState, Event, ResidentContact};
use gridcase_envelope::sealing::{open_contact, seal_contact};
use gridcase_eventlog::store::Loaded;
use gridcase_eventlog::{KeyState, KeyStore, KeyStoreError};
use gridcase_grpc::status;
use gridcase_proto::cases::v1 as api;
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

/// The resident's contact details from the filing, as `view` allows: opened
/// with the case's key; empty and marked erased once they were erased.
pub async fn shown(
    keys: &KeyStore,
    loaded: &Loaded,
    view: ContactView,
) -> Result<Option<api::ResidentContact>, Status> {
    let first = loaded.history.first().ok_or_else(|| status::internal(&"empty history"))?;
    let Event::Filed(filing) = first.event.decode().map_err(|e| status::internal(&e))? else {
        return Err(status::internal(&"a history that does not start with a filing"));
    };
    let Some(contact) = filing.contact else { return Ok(None) };
    let erased = api::ResidentContact { erased: true, ..Default::default() };
    if loaded.case.contact == ContactState::Erased {
        return Ok(Some(erased));
    }
    let Some(contact) = open(keys, &filing.case_id, &contact).await? else { return Ok(Some(erased)) };
    let masked = view == ContactView::Masked;
    let shown = |full: &str, masked_text: String| if masked { masked_text } else { full.to_owned() };
    Ok(Some(api::ResidentContact {
        name: contact.name.as_ref().map(|n| shown(n.expose(), n.masked())).unwrap_or_default(),
        phone: contact.phone.as_ref().map(|p| shown(p.expose(), p.masked())).unwrap_or_default(),
        email: contact.email.as_ref().map(|e| shown(e.expose(), e.masked())).unwrap_or_default(),
        masked,
        erased: false,
    }))
}
