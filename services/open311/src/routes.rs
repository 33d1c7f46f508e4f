//! The endpoints of GeoReport v2 and FixMyStreet's service request
//! updates. Each request's API key is passed on to the services as the
//! bearer of its calls: intake and the query service verify it and decide,
//! as they do for every caller; the gateway only translates.

use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use gridcase_domain::State as CaseState;
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::convert;
use gridcase_proto::query::v1 as query;
use http::{StatusCode, header};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::AppState;
use crate::catalogue;
use crate::document::{Document, Format, Item, errors};
use crate::items::{public_item, record_item, summary_item, update_item};
use crate::media;
use crate::params::{self, Jurisdiction, Params};
use crate::status;

/// An answer: a document in the asked format, or a GeoReport error.
pub struct Answer {
    format: Format,
    code: StatusCode,
    document: Document,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let body = self.document.render(self.format);
        (self.code, [(header::CONTENT_TYPE, self.format.content_type())], body).into_response()
    }
}

fn ok(format: Format, document: Document) -> Answer {
    Answer { format, code: StatusCode::OK, document }
}

fn refuse(format: Format, code: StatusCode, descriptions: Vec<String>) -> Answer {
    metrics::counter!(crate::metrics::REFUSED, "code" => code.as_u16().to_string()).increment(1);
    Answer { format, code, document: errors(code.as_u16(), &descriptions) }
}

/// A service's refusal in Open311's terms: the key (403), the case (404),
/// the fields (400, one error each, named as the client sent them).
fn refusal(format: Format, status: &tonic::Status) -> Answer {
    let fields = || {
        status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|v| format!("{}: {}", open311_name(&v.field), v.description))
                    .collect::<Vec<_>>()
            })
            .filter(|fields| !fields.is_empty())
            .unwrap_or_else(|| vec![status.message().to_owned()])
    };
    match status.code() {
        Code::Unauthenticated => refuse(format, StatusCode::FORBIDDEN, vec![format!("api_key: {}", status.message())]),
        Code::PermissionDenied => refuse(format, StatusCode::FORBIDDEN, vec![status.message().to_owned()]),
        Code::NotFound => refuse(format, StatusCode::NOT_FOUND, vec!["service_request_id: no such request".into()]),
        Code::InvalidArgument => refuse(format, StatusCode::BAD_REQUEST, fields()),
        Code::AlreadyExists => refuse(
            format,
            StatusCode::CONFLICT,
            vec![format!(
                "attribute[{}]: a different request was already filed under this reference",
                catalogue::CLIENT_REFERENCE
            )],
        ),
        Code::FailedPrecondition | Code::Aborted => refuse(format, StatusCode::CONFLICT, fields()),
        Code::Unavailable | Code::DeadlineExceeded => {
            refuse(format, StatusCode::SERVICE_UNAVAILABLE, vec!["the service is unavailable; try again".into()])
        }
        _ => {
            tracing::warn!(code = ?status.code(), "a service refused unexpectedly");
            refuse(format, StatusCode::BAD_GATEWAY, vec!["the service could not answer".into()])
        }
    }
}

/// The most photos one request may carry (intake's limit for a filing).
const MAX_PHOTOS: usize = 9;

/// A refused photo, named by its file.
fn media_refusal(format: Format, file_name: &str, status: &tonic::Status) -> Answer {
    if status.code() == Code::InvalidArgument {
        let problems = status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations.into_iter().map(|v| format!("media {file_name:?}: {}", v.description)).collect()
            })
            .unwrap_or_else(|| vec![format!("media {file_name:?}: {}", status.message())]);
        return refuse(format, StatusCode::BAD_REQUEST, problems);
    }
    refusal(format, status)
}

/// The Open311 parameter a service's field violation is about.
fn open311_name(field: &str) -> String {
    match field {
        "grid_code" => format!("attribute[{}]", catalogue::GRID_CODE),
        "category_code" => "service_code".into(),
        "client_reference" => format!("attribute[{}]", catalogue::CLIENT_REFERENCE),
        "request_kind" => format!("attribute[{}]", catalogue::REQUEST_KIND),
        "from" => "start_date".into(),
        "to" => "end_date".into(),
        "resident_contact.name" => "first_name, last_name".into(),
        "resident_contact.phone" => "phone".into(),
        "resident_contact.email" => "email".into(),
        "location.latitude" => "lat".into(),
        "location.longitude" => "long".into(),
        "location.address" => "address_string".into(),
        "note" => "description".into(),
        other => other.to_owned(),
    }
}

fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {key}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn jurisdiction<'a>(state: &'a AppState, format: Format, params: &Params) -> Result<&'a str, Answer> {
    params::jurisdiction(params, &state.reference).map_err(|problem| match problem {
        Jurisdiction::Unknown => refuse(
            format,
            StatusCode::NOT_FOUND,
            vec![format!(
                "jurisdiction_id: {:?} is not a jurisdiction of this endpoint",
                params.get("jurisdiction_id").unwrap_or_default()
            )],
        ),
        Jurisdiction::Required => {
            refuse(format, StatusCode::BAD_REQUEST, vec!["jurisdiction_id: is required (a 6-digit county code)".into()])
        }
    })
}

/// The request's API key: required, and of the form keys have (anything
/// else is refused here in Open311's words rather than passed on as a
/// malformed bearer token).
fn key_required(format: Format, params: &Params) -> Result<String, Answer> {
    match params.api_key() {
        None => Err(refuse(format, StatusCode::FORBIDDEN, vec!["api_key: is required".into()])),
        Some(key) if !key.starts_with("gck_") => Err(refuse(
            format,
            StatusCode::FORBIDDEN,
            vec!["api_key: is not an API key of this endpoint (they start gck_)".into()],
        )),
        Some(key) => Ok(key.to_owned()),
    }
}

/// Anything else: a GeoReport error, in XML.
pub fn not_found() -> Answer {
    unknown(Format::Xml)
}

fn unknown(format: Format) -> Answer {
    refuse(format, StatusCode::NOT_FOUND, vec!["no such resource".into()])
}

fn split(file: &str) -> Result<(&str, Format), Answer> {
    Format::split(file).ok_or_else(|| unknown(Format::Xml))
}

/// `GET services.xml`, `requests.xml`, `servicerequestupdates.xml`.
pub async fn get_top(State(state): State<AppState>, Path(file): Path<String>, RawQuery(query): RawQuery) -> Answer {
    let (stem, format) = match split(&file) {
        Ok(split) => split,
        Err(answer) => return answer,
    };
    let params = Params::parse(query.as_deref(), b"");
    let county = match jurisdiction(&state, format, &params) {
        Ok(county) => county,
        Err(answer) => return answer,
    };
    let result = match stem {
        "services" => Ok(ok(format, catalogue::services(&state.reference))),
        "requests" => get_requests(&state, format, &params, county).await,
        "servicerequestupdates" => get_updates(&state, format, &params).await,
        _ => Err(unknown(format)),
    };
    result.unwrap_or_else(|answer| answer)
}

/// `GET services/{code}.xml`.
pub async fn get_service(State(state): State<AppState>, Path(file): Path<String>, RawQuery(query): RawQuery) -> Answer {
    let (code, format) = match split(&file) {
        Ok(split) => split,
        Err(answer) => return answer,
    };
    if let Err(answer) = jurisdiction(&state, format, &Params::parse(query.as_deref(), b"")) {
        return answer;
    }
    match catalogue::definition(&state.reference, code) {
        Some(document) => ok(format, document),
        None => refuse(format, StatusCode::NOT_FOUND, vec![format!("service_code: {code:?} is not a service")]),
    }
}

/// `GET requests/{id}.xml`.
pub async fn get_request(State(state): State<AppState>, Path(file): Path<String>, RawQuery(query): RawQuery) -> Answer {
    let (id, format) = match split(&file) {
        Ok(split) => split,
        Err(answer) => return answer,
    };
    let params = Params::parse(query.as_deref(), b"");
    let result = match jurisdiction(&state, format, &params) {
        Ok(_) => by_ids(&state, format, &params, &[id.to_owned()]).await,
        Err(answer) => Err(answer),
    };
    match result {
        Ok(answer) if matches!(&answer.document, Document::List { items, .. } if items.is_empty()) => {
            refuse(format, StatusCode::NOT_FOUND, vec![format!("service_request_id: no request {id:?}")])
        }
        Ok(answer) | Err(answer) => answer,
    }
}

/// `GET tokens/{token}.xml`: requests are answered with their id at once,
/// so no token is ever handed out.
pub async fn get_token(Path(file): Path<String>) -> Answer {
    let format = Format::split(&file).map_or(Format::Xml, |(_, f)| f);
    refuse(
        format,
        StatusCode::NOT_FOUND,
        vec!["token: this endpoint answers with service_request_id, never a token".into()],
    )
}

/// `POST requests.xml` (form-encoded, or multipart/form-data with photos),
/// `servicerequestupdates.xml`.
pub async fn post_top(State(state): State<AppState>, Path(file): Path<String>, request: Request) -> Answer {
    let (stem, format) = match split(&file) {
        Ok(split) => split,
        Err(answer) => return answer,
    };
    let (params, files) = match media::read(request, state.config.max_request_bytes).await {
        Ok(read) => read,
        Err(problem) => return refuse(format, StatusCode::BAD_REQUEST, vec![problem]),
    };
    let result = async {
        let key = key_required(format, &params)?;
        let county = jurisdiction(&state, format, &params)?;
        match stem {
            "requests" => post_request(&state, format, &params, files, county, &key).await,
            "servicerequestupdates" => post_update(&state, format, &params, &key).await,
            _ => Err(unknown(format)),
        }
    }
    .await;
    result.unwrap_or_else(|answer| answer)
}

async fn post_request(
    state: &AppState,
    format: Format,
    params: &Params,
    mut files: Vec<media::Media>,
    county: &str,
    key: &str,
) -> Result<Answer, Answer> {
    let mut filing = params::filing(params, &state.reference, county, jiff::Timestamp::now())
        .map_err(|problems| refuse(format, StatusCode::BAD_REQUEST, problems))?;
    if let Some(url) = params.get("media_url") {
        if state.config.media_url_origins.is_empty() {
            // Never fetched from an address a client names (a server-side
            // request forgery hole) unless its host is allowed; counted so
            // an operator sees it happen.
            metrics::counter!(crate::metrics::MEDIA_URLS_IGNORED).increment(1);
        } else {
            let fetched = media::fetch(url, &state.config.media_url_origins, state.config.max_media_bytes)
                .await
                .map_err(|problem| refuse(format, StatusCode::BAD_REQUEST, vec![problem]))?;
            files.push(fetched);
        }
    }
    if files.len() > MAX_PHOTOS {
        let problem = format!("media: at most {MAX_PHOTOS} photos, got {}", files.len());
        return Err(refuse(format, StatusCode::BAD_REQUEST, vec![problem]));
    }
    for file in &files {
        let stream = tokio_stream::iter(media::parts(file));
        let stored = state
            .upstream
            .intake
            .clone()
            .upload_attachment(with_key(key, stream))
            .await
            .map_err(|status| media_refusal(format, &file.file_name, &status))?
            .into_inner();
        filing.attachments.extend(stored.attachment);
    }
    let receipt = state
        .upstream
        .intake
        .clone()
        .file_case(with_key(key, filing))
        .await
        .map_err(|status| refusal(format, &status))?
        .into_inner();
    metrics::counter!(crate::metrics::FILED, "replayed" => receipt.replayed.to_string()).increment(1);
    let item = Item::default()
        .text("service_request_id", receipt.case_id)
        .text("service_notice", "已收到，将按时限答复")
        .text("account_id", "");
    let code = if receipt.replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok(Answer {
        format,
        code,
        document: Document::List { root: "service_requests", item: "request", items: vec![item] },
    })
}

async fn post_update(state: &AppState, format: Format, params: &Params, key: &str) -> Result<Answer, Answer> {
    let mut problems = Vec::new();
    let case_id = params.get("service_request_id");
    let update_id = params.get("update_id");
    let description = params.get("description");
    for (name, value) in [("service_request_id", case_id), ("update_id", update_id), ("description", description)] {
        if value.is_none() {
            problems.push(format!("{name}: is required"));
        }
    }
    if !problems.is_empty() {
        return Err(refuse(format, StatusCode::BAD_REQUEST, problems));
    }
    let (case_id, update_id, description) = (case_id.unwrap(), update_id.unwrap(), description.unwrap());
    // The resident's words, and the status the partner reported, as a note:
    // a client's status never moves the case; only gridcase's rules do.
    let note = match params.get("status") {
        Some(reported) => format!("居民留言（合作平台报告状态 {reported}）：{description}"),
        None => format!("居民留言：{description}"),
    };
    let request = cases::AddProgressRequest {
        context: Some(cases::CommandContext {
            case_id: case_id.to_owned(),
            command_id: command_id(update_id),
            expected_version: None,
        }),
        note,
        attachments: vec![],
    };
    let result = state
        .upstream
        .cases
        .clone()
        .add_progress(with_key(key, request))
        .await
        .map_err(|status| refusal(format, &status))?
        .into_inner();
    metrics::counter!(crate::metrics::COMMENTS, "replayed" => result.replayed.to_string()).increment(1);
    let item = Item::default().text("update_id", format!("{}:{}", result.case_id, result.version));
    Ok(ok(format, Document::List { root: "service_request_updates", item: "request_update", items: vec![item] }))
}

/// The command id of a client's update: its own id when that is a fine
/// command id, else a digest of it. Retrying an update is one note.
fn command_id(update_id: &str) -> String {
    let fine = update_id.len() <= 100
        && update_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if fine {
        format!("open311:{update_id}")
    } else {
        use sha2::Digest as _;
        format!("open311:h:{}", hex::encode(&sha2::Sha256::digest(update_id.as_bytes())[..16]))
    }
}

async fn get_requests(state: &AppState, format: Format, params: &Params, county: &str) -> Result<Answer, Answer> {
    if let Some(ids) = params.get("service_request_id") {
        let ids: Vec<String> = ids.split(',').map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()).collect();
        return by_ids(state, format, params, &ids).await;
    }
    let key = key_required(format, params)?;
    let mut problems = Vec::new();
    let (start, end) = window(params, &mut problems);
    let states: Vec<i32> = match params.get("status") {
        None => vec![],
        Some(wanted) => {
            let mut states = Vec::new();
            for one in wanted.split(',').map(str::trim) {
                match one {
                    "open" => {
                        states.extend(CaseState::ALL.into_iter().filter(|s| status::request_status(*s) == "open"))
                    }
                    "closed" => {
                        states.extend(CaseState::ALL.into_iter().filter(|s| status::request_status(*s) == "closed"))
                    }
                    other => problems.push(format!("status: {other:?} must be open or closed")),
                }
            }
            states.into_iter().map(|s| convert::state_to_proto(s) as i32).collect()
        }
    };
    if !problems.is_empty() {
        return Err(refuse(format, StatusCode::BAD_REQUEST, problems));
    }
    // GeoReport v2: without dates, the last 90 days.
    let end = end.unwrap_or_else(jiff::Timestamp::now);
    let start = start.unwrap_or(end - jiff::SignedDuration::from_hours(90 * 24));
    // The key's own scope cuts the list (a township partner's too); the
    // county only names the jurisdiction, checked above.
    let _ = county;
    let request = query::ListCasesRequest {
        states,
        filed_from: Some(convert::timestamp_to_proto(start)),
        filed_to: Some(convert::timestamp_to_proto(end)),
        category_code: params.get("service_code").unwrap_or_default().to_owned(),
        page_size: 1000,
        ..Default::default()
    };
    let list = state
        .upstream
        .query
        .clone()
        .list_cases(with_key(&key, request))
        .await
        .map_err(|status| refusal(format, &status))?
        .into_inner();
    let items = list.cases.iter().map(|case| summary_item(state, case)).collect();
    Ok(ok(format, Document::List { root: "service_requests", item: "request", items }))
}

/// `start_date` and `end_date`, each if given; a problem for each that
/// does not read as a time.
fn window(params: &Params, problems: &mut Vec<String>) -> (Option<jiff::Timestamp>, Option<jiff::Timestamp>) {
    let mut time = |name: &str| {
        let text = params.get(name)?;
        let at = params::time(text);
        if at.is_none() {
            problems.push(format!("{name}: {text:?} is not a W3C date and time (e.g. 2026-12-06T08:00:00+08:00)"));
        }
        at
    };
    (time("start_date"), time("end_date"))
}

/// Requests by id: with a key, the partner's own (every public field);
/// without one, the public status (state, service, times), when allowed.
async fn by_ids(state: &AppState, format: Format, params: &Params, ids: &[String]) -> Result<Answer, Answer> {
    if ids.len() > 100 {
        return Err(refuse(format, StatusCode::BAD_REQUEST, vec!["service_request_id: at most 100 ids".into()]));
    }
    let items = match params.api_key() {
        Some(_) => {
            let key = key_required(format, params)?;
            let key = key.as_str();
            let mut items = Vec::new();
            for id in ids {
                let request = query::GetCaseRequest { case_id: id.clone() };
                match state.upstream.query.clone().get_case(with_key(key, request)).await {
                    Ok(case) => items.push(record_item(state, &case.into_inner())),
                    Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {}
                    Err(status) => return Err(refusal(format, &status)),
                }
            }
            items
        }
        None if state.config.public_status => {
            let request = query::GetPublicStatusRequest { case_ids: ids.to_vec() };
            let statuses = state
                .upstream
                .query
                .clone()
                .get_public_status(request)
                .await
                .map_err(|status| refusal(format, &status))?
                .into_inner();
            statuses.statuses.iter().map(|s| public_item(state, s)).collect()
        }
        None => return Err(refuse(format, StatusCode::FORBIDDEN, vec!["api_key: is required".into()])),
    };
    Ok(ok(format, Document::List { root: "service_requests", item: "request", items }))
}

/// `GET servicerequestupdates.xml`: every change of the partner's requests
/// in the window, oldest first.
async fn get_updates(state: &AppState, format: Format, params: &Params) -> Result<Answer, Answer> {
    let key = key_required(format, params)?;
    let mut problems = Vec::new();
    let (start, end) = window(params, &mut problems);
    if !problems.is_empty() {
        return Err(refuse(format, StatusCode::BAD_REQUEST, problems));
    }
    // Without dates: the last two hours (FixMyStreet's own window).
    let end = end.unwrap_or_else(jiff::Timestamp::now);
    let start = start.unwrap_or(end - jiff::SignedDuration::from_hours(2));
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = query::ListCaseUpdatesRequest {
            from: Some(convert::timestamp_to_proto(start)),
            to: Some(convert::timestamp_to_proto(end)),
            page_size: 1000,
            page_token,
        };
        let page = state
            .upstream
            .query
            .clone()
            .list_case_updates(with_key(&key, request))
            .await
            .map_err(|status| refusal(format, &status))?
            .into_inner();
        for update in &page.updates {
            if let Some(item) = update_item(update) {
                items.push(item);
            }
        }
        if items.len() > state.config.max_updates {
            return Err(refuse(
                format,
                StatusCode::BAD_REQUEST,
                vec![format!(
                    "start_date, end_date: more than {} updates in the window: ask for a narrower one",
                    state.config.max_updates
                )],
            ));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(ok(format, Document::List { root: "service_request_updates", item: "request_update", items }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_id_becomes_one_command_id() {
        assert_eq!(command_id("1234"), "open311:1234");
        let odd = command_id("comment #5 / résident");
        assert!(odd.starts_with("open311:h:") && odd.len() == 42, "{odd}");
        assert_eq!(odd, command_id("comment #5 / résident"));
    }

    #[test]
    fn field_names_read_as_the_client_sent_them() {
        assert_eq!(open311_name("category_code"), "service_code");
        assert_eq!(open311_name("resident_contact.email"), "email");
        assert_eq!(open311_name("description"), "description");
    }
}
