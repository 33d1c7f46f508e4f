//! A request's parameters (query string and form body together, as some
//! clients put `jurisdiction_id` in the query of a POST), and what they
//! mean: the jurisdiction, times, and a new request as intake's
//! `FileCaseRequest`. Pure: the reference data and `now` are passed in.

use gridcase_domain::{CategoryCode, RequestKind};
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake;
use gridcase_reference::{Level, Reference};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};

use crate::catalogue::{CLIENT_REFERENCE, GRID_CODE, REQUEST_KIND};

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for source in [query.unwrap_or_default().as_bytes(), body] {
            pairs.extend(form_urlencoded::parse(source).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Self { pairs }
    }

    pub fn push(&mut self, name: String, value: String) {
        self.pairs.push((name, value));
    }

    /// The first non-blank value of a parameter, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).find(|v| !v.is_empty())
    }

    /// `attribute[code]` (or `attribute[code][]`).
    pub fn attribute(&self, code: &str) -> Option<&str> {
        self.get(&format!("attribute[{code}]")).or_else(|| self.get(&format!("attribute[{code}][]")))
    }

    pub fn api_key(&self) -> Option<&str> {
        self.get("api_key")
    }
}

/// Which county a request is for: `jurisdiction_id` if given (an unknown
/// one is `Err`), else the one county the reference data holds.
pub fn jurisdiction<'a>(params: &Params, reference: &'a Reference) -> Result<&'a str, Jurisdiction> {
    let counties = || reference.registry.regions().filter(|r| r.level == Level::County);
    match params.get("jurisdiction_id") {
        Some(id) => counties().find(|r| r.code == id).map(|r| r.code.as_str()).ok_or(Jurisdiction::Unknown),
        None => {
            let mut all = counties();
            match (all.next(), all.next()) {
                (Some(only), None) => Ok(only.code.as_str()),
                _ => Err(Jurisdiction::Required),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jurisdiction {
    Unknown,
    Required,
}

/// A time as Open311 clients send it: RFC 3339 (W3C) with an offset or
/// `Z`; without one, Beijing time; a date alone, its first second in Beijing.
pub fn time(text: &str) -> Option<Timestamp> {
    // An unencoded "+08:00" in a query string arrives as " 08:00".
    let restored;
    let text = match text.rsplit_once(' ') {
        Some((head, offset)) if head.contains('T') && offset.len() == 5 && offset.as_bytes()[2] == b':' => {
            restored = format!("{head}+{offset}");
            restored.as_str()
        }
        _ => text,
    };
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    let beijing = TimeZone::get("Asia/Shanghai").ok()?;
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>() {
        return civil.to_zoned(beijing).ok().map(|z| z.timestamp());
    }
    text.parse::<jiff::civil::Date>().ok()?.to_zoned(beijing).ok().map(|z| z.timestamp())
}

/// A time as the gateway writes it: RFC 3339 in Beijing time (`+08:00`).
pub fn beijing(at: Timestamp) -> String {
    let tz = TimeZone::get("Asia/Shanghai").expect("the bundled tz database has Asia/Shanghai");
    at.to_zoned(tz).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A new request as intake's filing, or every problem found (each one
/// sentence naming the Open311 parameter).
pub fn filing(
    params: &Params,
    reference: &Reference,
    county: &str,
    now: Timestamp,
) -> Result<intake::FileCaseRequest, Vec<String>> {
    let mut problems = Vec::new();
    let service_code = params.get("service_code");
    match service_code {
        None => problems.push("service_code: is required".to_owned()),
        Some(code) => {
            let known = CategoryCode::parse(code).ok().and_then(|c| reference.taxonomy.category(&c)).is_some();
            if !known {
                problems.push(format!("service_code: {code:?} is not a service of services.xml"));
            }
        }
    }
    let degrees = |name: &str, problems: &mut Vec<String>| {
        let text = params.get(name)?;
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Some(value),
            _ => {
                problems.push(format!("{name}: {text:?} is not a number of degrees"));
                None
            }
        }
    };
    let (lat, long) = (degrees("lat", &mut problems), degrees("long", &mut problems));
    let address = params.get("address_string").unwrap_or_default();
    let named_grid = params.attribute(GRID_CODE);
    let point = match (lat, long) {
        (Some(lat), Some(long)) => Some((lat, long)),
        // An address and a grid, no point: the request goes on the map
        // inside its grid, the address kept with it.
        (None, None) if params.get("lat").is_none() && params.get("long").is_none() => {
            match (address.is_empty(), named_grid.and_then(|grid| reference.boundaries.inside_point(grid))) {
                (false, Some(point)) => Some(point),
                (false, None) => {
                    problems.push(format!(
                        "lat, long: are required with address_string unless attribute[{GRID_CODE}] names a grid \
                         of the map: gridcase places every request on the grid map, and does not look addresses up"
                    ));
                    None
                }
                (true, _) => {
                    problems.push(
                        "lat, long: a location is required (lat and long, WGS 84, or address_string \
                                   with attribute[grid_code])"
                            .to_owned(),
                    );
                    None
                }
            }
        }
        (None, Some(_)) if params.get("lat").is_none() => {
            problems.push("lat: is required with long".to_owned());
            None
        }
        (Some(_), None) if params.get("long").is_none() => {
            problems.push("long: is required with lat".to_owned());
            None
        }
        _ => None,
    };
    let grid = match (named_grid, point) {
        (Some(grid), _) => Some(grid.to_owned()),
        (None, Some((lat, long))) => match reference.boundaries.locate(lat, long) {
            Some(grid) => Some(grid.to_owned()),
            None => {
                problems.push(format!(
                    "attribute[{GRID_CODE}]: the point {lat}, {long} lies in no grid of the map: name the grid"
                ));
                None
            }
        },
        (None, None) => None,
    };
    if let Some(grid) = grid.as_ref().filter(|grid| !grid.starts_with(county)) {
        problems.push(format!("attribute[{GRID_CODE}]: grid {grid} is not in jurisdiction {county}"));
    }
    let request_kind = match params.attribute(REQUEST_KIND) {
        // Every resident's request has a kind: it sets the reply clock.
        None => {
            problems.push(format!(
                "attribute[{REQUEST_KIND}]: is required (the kind of request sets its reply time limit)"
            ));
            common::RequestKind::Unspecified
        }
        Some(text) => match RequestKind::parse(text) {
            Some(kind) => gridcase_proto::convert::request_kind_to_proto(Some(kind)),
            None => {
                let keys: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
                problems.push(format!("attribute[{REQUEST_KIND}]: {text:?} must be one of {}", keys.join(", ")));
                common::RequestKind::Unspecified
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let name = resident_name(params.get("first_name"), params.get("last_name"));
    let contact = intake::ResidentContact {
        name,
        phone: params.get("phone").unwrap_or_default().to_owned(),
        email: params.get("email").unwrap_or_default().to_owned(),
    };
    let given = !(contact.name.is_empty() && contact.phone.is_empty() && contact.email.is_empty());
    let (latitude, longitude) = point.expect("checked");
    let mut request = intake::FileCaseRequest {
        case_id: String::new(),
        grid_code: grid.expect("checked"),
        category_code: service_code.expect("checked").to_owned(),
        description: params.get("description").unwrap_or_default().to_owned(),
        location: Some(common::Location { latitude, longitude, address: address.to_owned() }),
        reported_at: Some(gridcase_proto::convert::timestamp_to_proto(now)),
        severity_hint: None,
        resident_contact: given.then_some(contact),
        attachments: vec![],
        client_reference: params.attribute(CLIENT_REFERENCE).unwrap_or_default().to_owned(),
        request_kind: request_kind as i32,
    };
    if request.client_reference.is_empty() {
        request.client_reference = content_reference(&request);
    }
    Ok(request)
}

/// Without a reference of the partner's, a request's identity is its
/// content: the same request sent again (a retry) is the same case.
/// `c:` and the first 32 bytes of a SHA-256 over every field that was sent,
/// the time excepted.
pub fn content_reference(request: &intake::FileCaseRequest) -> String {
    let mut hash = Sha256::new();
    let contact = request.resident_contact.clone().unwrap_or_default();
    let location = request.location.clone().unwrap_or_default();
    for part in [
        request.grid_code.as_str(),
        &request.category_code,
        &request.description,
        &location.latitude.to_string(),
        &location.longitude.to_string(),
        &location.address,
        &contact.name,
        &contact.phone,
        &contact.email,
        &request.request_kind.to_string(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    format!("c:{}", hex::encode(hash.finalize()))
}

/// The resident's name from Open311's two fields, in the order they came:
/// FixMyStreet splits the name a resident typed at its first space, so
/// "王 秀英" arrives as first_name 王, last_name 秀英, and joining them in order
/// gives the name as written (without the space when both are Chinese).
fn resident_name(first: Option<&str>, last: Option<&str>) -> String {
    let chinese = |text: &str| text.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || c == '·');
    match (first, last) {
        (Some(first), Some(last)) if chinese(first) && chinese(last) => format!("{first}{last}"),
        (Some(first), Some(last)) => format!("{first} {last}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/reference");
        Reference::load(&dir).unwrap()
    }

    fn params(text: &str) -> Params {
        Params::parse(None, text.as_bytes())
    }

    #[test]
    fn a_request_becomes_a_filing_its_grid_found_from_its_point() {
        let reference = reference();
        let now = Timestamp::from_second(1_780_000_000).unwrap();
        let p = params(
            "service_code=0101&lat=30.2741&long=120.1551&description=%E5%9E%83%E5%9C%BE&first_name=%E7%8E%8B\
             &last_name=%E7%A7%80%E8%8B%B1&email=w%40example.org&phone=13812345678&attribute%5Bfixmystreet_id%5D=42\
             &attribute%5Brequest_kind%5D=COMPLAINT",
        );
        let filed = filing(&p, &reference, "990101", now).unwrap();
        assert_eq!(filed.grid_code, "99010100100100101");
        assert_eq!(filed.client_reference, "42");
        assert_eq!(filed.request_kind, common::RequestKind::Complaint as i32);
        let contact = filed.resident_contact.unwrap();
        assert_eq!((contact.name.as_str(), contact.email.as_str()), ("王秀英", "w@example.org"));
        // Without a reference, the content is the identity, the same every time.
        let p = params("service_code=0101&lat=30.2741&long=120.1551&description=x&attribute[request_kind]=HELP");
        let first = filing(&p, &reference, "990101", now).unwrap().client_reference;
        assert!(first.starts_with("c:") && first.len() == 66, "{first}");
        let later = now + jiff::SignedDuration::from_secs(60);
        assert_eq!(filing(&p, &reference, "990101", later).unwrap().client_reference, first);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let reference = reference();
        let now = Timestamp::from_second(1_780_000_000).unwrap();
        let problems =
            filing(&params("service_code=9999&lat=abc&attribute[request_kind]=x"), &reference, "990101", now)
                .unwrap_err();
        let text = problems.join("\n");
        for part in ["service_code:", "lat: \"abc\"", "attribute[request_kind]:"] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let problems = filing(&params("service_code=0101&lat=39.9&long=116.4"), &reference, "990101", now).unwrap_err();
        assert!(problems[0].starts_with("attribute[grid_code]: the point"), "{problems:?}");
        let problems = filing(&params("service_code=0101&address_string=x"), &reference, "990101", now).unwrap_err();
        assert!(problems[0].contains("does not look addresses up"), "{problems:?}");
        // With the grid named, an address alone is placed inside that grid.
        let p = params(
            "service_code=0101&description=x&address_string=%E4%B8%89%E5%8F%B7%E6%A5%BC\
             &attribute[grid_code]=990101001001002&attribute[request_kind]=HELP",
        );
        let filed = filing(&p, &reference, "990101", now).unwrap();
        let location = filed.location.unwrap();
        assert_eq!(location.address, "三号楼");
        assert_eq!(reference.boundaries.locate(location.latitude, location.longitude), Some("990101001001002"));
    }

    #[test]
    fn times_read_as_clients_write_them_and_are_written_in_beijing_time() {
        let at = Timestamp::from_second(1_780_000_000).unwrap();
        assert_eq!(time("2026-05-28T20:26:40Z"), Some(at));
        assert_eq!(time("2026-05-29T04:26:40+08:00"), Some(at));
        assert_eq!(time("2026-05-29T04:26:40"), Some(at));
        assert_eq!(time("2026-05-29T04:26:40 08:00"), Some(at), "an unencoded + read as a space");
        assert_eq!(beijing(at), "2026-05-29T04:26:40+08:00");
        assert!(time("yesterday").is_none());
    }
}
