//! How gridcase's answers read as Open311 items: a request (by id with a
//! key, in a list, or its public status) and an update.

use gridcase_domain::State as CaseState;
use gridcase_proto::convert;
use gridcase_proto::query::v1 as query;

use crate::AppState;
use crate::document::{Item, Value};
use crate::params;
use crate::status;

fn service_name(state: &AppState, code: &str) -> String {
    gridcase_domain::CategoryCode::parse(code)
        .ok()
        .and_then(|c| state.reference.taxonomy.category(&c).map(|c| c.name.clone()))
        .unwrap_or_default()
}

fn time_text(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(convert::timestamp_from_proto).map(params::beijing).unwrap_or_default()
}

fn case_state(value: i32) -> CaseState {
    convert::state_from_proto(value).unwrap_or(CaseState::Reported)
}

pub(crate) fn public_item(state: &AppState, status: &query::PublicStatus) -> Item {
    let case_state = case_state(status.state);
    Item::default()
        .text("service_request_id", status.case_id.clone())
        .text("status", status::request_status(case_state))
        .text("status_notes", status::state_note(case_state))
        .text("service_name", service_name(state, &status.category_code))
        .text("service_code", status.category_code.clone())
        .text("requested_datetime", time_text(status.filed_at.as_ref()))
        .text("updated_datetime", time_text(status.updated_at.as_ref()))
        .text("expected_datetime", time_text(status.expected_at.as_ref()))
}

fn located(item: Item, location: Option<&gridcase_proto::common::v1::Location>) -> Item {
    match location {
        Some(l) => item.value("lat", Value::Degrees(l.latitude)).value("long", Value::Degrees(l.longitude)),
        None => item,
    }
}

/// What a request shows, from either read of the read models.
struct Shown<'a> {
    case_id: &'a str,
    state: i32,
    category_code: &'a str,
    description: &'a str,
    unit: &'a str,
    filed_at: Option<&'a prost_types::Timestamp>,
    updated_at: Option<&'a prost_types::Timestamp>,
    expected_at: Option<&'a prost_types::Timestamp>,
    location: Option<&'a gridcase_proto::common::v1::Location>,
}

fn shown_item(state: &AppState, shown: Shown<'_>) -> Item {
    let case_state = case_state(shown.state);
    let item = Item::default()
        .text("service_request_id", shown.case_id)
        .text("status", status::request_status(case_state))
        .text("status_notes", status::state_note(case_state))
        .text("service_name", service_name(state, shown.category_code))
        .text("service_code", shown.category_code)
        .text("description", shown.description)
        .text("agency_responsible", shown.unit)
        .text("requested_datetime", time_text(shown.filed_at))
        .text("updated_datetime", time_text(shown.updated_at))
        .text("expected_datetime", time_text(shown.expected_at));
    located(item, shown.location)
}

pub(crate) fn record_item(state: &AppState, case: &query::CaseRecord) -> Item {
    let expected = case
        .deadlines
        .iter()
        .find(|d| d.clock == gridcase_proto::common::v1::Clock::Resolve as i32 && d.running)
        .and_then(|d| d.due.as_ref());
    shown_item(
        state,
        Shown {
            case_id: &case.case_id,
            state: case.state,
            category_code: &case.category_code,
            description: &case.description,
            unit: &case.unit,
            filed_at: case.filed_at.as_ref(),
            updated_at: case.updated_at.as_ref(),
            expected_at: expected,
            location: case.location.as_ref(),
        },
    )
}

pub(crate) fn summary_item(state: &AppState, case: &query::CaseSummary) -> Item {
    let resolving = case.next_due_clock == gridcase_proto::common::v1::Clock::Resolve as i32;
    shown_item(
        state,
        Shown {
            case_id: &case.case_id,
            state: case.state,
            category_code: &case.category_code,
            description: &case.description,
            unit: &case.unit,
            filed_at: case.filed_at.as_ref(),
            updated_at: case.updated_at.as_ref(),
            expected_at: case.next_due.as_ref().filter(|_| resolving),
            location: case.location.as_ref(),
        },
    )
}

pub(crate) fn update_item(update: &query::CaseUpdate) -> Option<Item> {
    let (status, description) =
        status::update_of(&update.event_type, &update.unit, &update.reason, &update.state_event)?;
    let mut item = Item::default()
        .text("update_id", update.event_id.clone())
        .text("service_request_id", update.case_id.clone())
        .text("status", status)
        .text("updated_datetime", time_text(update.occurred_at.as_ref()))
        .text("description", description)
        .text("external_status_code", update.event_type.clone())
        .text("media_url", "");
    // FixMyStreet finds its report by its own id first, when numeric.
    if !update.reference.is_empty() && update.reference.bytes().all(|b| b.is_ascii_digit()) {
        item = item.text("fixmystreet_id", update.reference.clone());
    }
    Some(item)
}
