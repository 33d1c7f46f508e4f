//! From a FileCaseRequest to the domain's Filing, or every field violation
//! found. Pure: the reference data, the limits and `now` are passed in.

use gridcase_domain::{
    AttachmentRef, CaseId, CategoryCode, Channel, EmailAddress, Filing, GridCode, Location, LocationError, OutsideGrid,
    PersonName, PhoneNumber, ResidentContact, Sha256Digest, Text,
};
use gridcase_grpc::Violations;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as api;
use gridcase_reference::Reference;
use jiff::{SignedDuration, Timestamp};

/// Content types an attachment may have.
pub const CONTENT_TYPES: [&str; 5] = ["image/jpeg", "image/png", "image/webp", "image/heic", "video/mp4"];

/// Whether `content` is what `declared` says, judged from its leading bytes
/// (`infer`); `Err` names what the bytes look like instead. HEIC is the HEIF
/// container, which `infer` names `image/heif`.
pub fn content_matches(declared: &str, content: &[u8]) -> Result<(), String> {
    let found = infer::get(content).map(|kind| kind.mime_type());
    let matches = match (declared, found) {
        ("image/heic", Some("image/heif")) => true,
        (declared, Some(found)) => declared == found,
        (_, None) => false,
    };
    if matches { Ok(()) } else { Err(found.map_or_else(|| "an unknown type".to_owned(), str::to_owned)) }
}
/// How many attachments one filing may reference.
pub const MAX_ATTACHMENTS: usize = 9;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_attachment_bytes: u64,
    pub max_clock_skew: SignedDuration,
    pub max_report_age: SignedDuration,
    /// How far (metres) outside its grid's boundary a filing may lie before
    /// it is flagged (`Filing::outside_grid`).
    pub grid_tolerance_m: u32,
}

pub use gridcase_proto::convert::{tier_from_proto, timestamp_from_proto, timestamp_to_proto};

/// Who files: their subject (a derived case id is theirs alone) and the
/// channel that follows from their role.
#[derive(Debug, Clone, Copy)]
pub struct Filer<'a> {
    pub subject: &'a str,
    pub channel: Channel,
}

/// The longest client reference.
pub const MAX_REFERENCE_CHARS: usize = 100;

/// A point as sent, or its violation (the fields named under `location`).
pub fn location_of(location: &common::Location, v: &mut Violations) -> Option<Location> {
    let address = Some(location.address.as_str());
    match Location::from_degrees(location.latitude, location.longitude, address) {
        Ok(location) => Some(location),
        Err(error) => {
            let (field, rule) = match error {
                LocationError::Latitude => ("location.latitude", "OUT_OF_RANGE"),
                LocationError::Longitude => ("location.longitude", "OUT_OF_RANGE"),
                LocationError::OutsideChina => ("location", "OUTSIDE_SERVICE_AREA"),
                LocationError::AddressTooLong { .. } => ("location.address", "TOO_LONG"),
            };
            v.add(field, rule, error.to_string());
            None
        }
    }
}

/// When a worker saw something (the device's time): required, not ahead of
/// `now` by more than the clock skew allowed, not older than reports may be.
pub fn reported_at(
    value: Option<&prost_types::Timestamp>,
    limits: &Limits,
    now: Timestamp,
    v: &mut Violations,
) -> Option<Timestamp> {
    match value {
        None => {
            v.add("reported_at", "REQUIRED", "is required: the device time when the report was made");
            None
        }
        Some(ts) => match timestamp_from_proto(ts) {
            None => {
                v.add("reported_at", "MALFORMED", "is not a valid timestamp");
                None
            }
            Some(at) if at > now + limits.max_clock_skew => {
                v.add(
                    "reported_at",
                    "IN_THE_FUTURE",
                    format!(
                        "lies more than {:#} ahead of the server clock: check the device clock",
                        limits.max_clock_skew
                    ),
                );
                None
            }
            Some(at) if at < now - limits.max_report_age => {
                v.add("reported_at", "TOO_OLD", format!("is older than {:#}", limits.max_report_age));
                None
            }
            Some(at) => Some(at),
        },
    }
}

pub fn file_case(
    request: &api::FileCaseRequest,
    filer: Filer<'_>,
    reference: &Reference,
    limits: &Limits,
    now: Timestamp,
) -> Result<Filing, Violations> {
    let mut v = Violations::new();

    let client_reference = match request.client_reference.trim() {
        "" => None,
        text if text.chars().count() <= MAX_REFERENCE_CHARS
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)) =>
        {
            Text::parse(text, MAX_REFERENCE_CHARS).ok()
        }
        _ => {
            v.add("client_reference", "MALFORMED", format!("must be 1-{MAX_REFERENCE_CHARS} letters, digits or -_.:/"));
            None
        }
    };

    let case_id = match (request.case_id.trim(), &client_reference) {
        ("", Some(reference)) => Some(CaseId::derived(filer.subject, reference.as_str())),
        ("", None) => {
            v.add(
                "case_id",
                "REQUIRED",
                "is required: a UUID v7 generated by the client (or file under a client_reference)",
            );
            None
        }
        (text, _) => CaseId::parse_new(text).map_err(|e| v.add("case_id", "MALFORMED", e.to_string())).ok(),
    };

    let request_kind = match common::RequestKind::try_from(request.request_kind) {
        Ok(common::RequestKind::Unspecified) => None,
        Ok(kind) => gridcase_proto::convert::request_kind_from_proto(kind),
        Err(_) => {
            v.add("request_kind", "UNKNOWN_VALUE", "must be one of the REQUEST_KIND_ values (or be omitted)");
            None
        }
    };

    let grid = match request.grid_code.trim() {
        "" => {
            v.add("grid_code", "REQUIRED", "is required");
            None
        }
        text => match GridCode::parse(text) {
            Err(e) => {
                v.add("grid_code", "MALFORMED", e.to_string());
                None
            }
            Ok(grid) if reference.registry.grid(&grid).is_none() => {
                v.add("grid_code", "UNKNOWN_GRID", format!("{grid} is not a registered grid or micro-grid"));
                None
            }
            Ok(grid) => Some(grid),
        },
    };

    let category = match request.category_code.trim() {
        "" => {
            v.add("category_code", "REQUIRED", "is required");
            None
        }
        text => match CategoryCode::parse(text) {
            Err(e) => {
                v.add("category_code", "MALFORMED", e.to_string());
                None
            }
            Ok(code) if reference.taxonomy.category(&code).is_none() => {
                v.add("category_code", "UNKNOWN_CATEGORY", format!("{code} is not in the category taxonomy"));
                None
            }
            Ok(code) => Some(code),
        },
    };

    let description = Text::parse(&request.description, Text::DESCRIPTION_MAX)
        .map_err(|e| v.add("description", text_rule(&e), e.to_string()))
        .ok();

    let location = match &request.location {
        None => {
            v.add("location", "REQUIRED", "is required");
            None
        }
        Some(location) => location_of(location, &mut v),
    };

    let reported_at = reported_at(request.reported_at.as_ref(), limits, now, &mut v);

    let severity_hint = match request.severity_hint {
        None => None,
        Some(value) => match tier_from_proto(value) {
            Some(tier) => Some(tier),
            None => {
                v.add(
                    "severity_hint",
                    "UNKNOWN_VALUE",
                    "must be TIER_CRITICAL, TIER_URGENT, TIER_NORMAL or TIER_COMPLEX (or be omitted)",
                );
                None
            }
        },
    };

    let contact = request.resident_contact.as_ref().and_then(|contact| {
        let name_given = !contact.name.trim().is_empty();
        let phone_given = !contact.phone.trim().is_empty();
        let email_given = !contact.email.trim().is_empty();
        if !name_given && !phone_given && !email_given {
            v.add("resident_contact", "EMPTY", "must give a name, a phone number or an e-mail address, or be omitted");
            return None;
        }
        // Every field's problem at once.
        let email = email_given
            .then(|| EmailAddress::parse(&contact.email))
            .transpose()
            .map_err(|e| v.add("resident_contact.email", "MALFORMED", e.to_string()));
        let name = name_given
            .then(|| PersonName::parse(&contact.name))
            .transpose()
            .map_err(|e| v.add("resident_contact.name", "MALFORMED", e.to_string()));
        let phone = phone_given
            .then(|| PhoneNumber::parse(&contact.phone))
            .transpose()
            .map_err(|e| v.add("resident_contact.phone", "MALFORMED", e.to_string()));
        let (name, phone, email) = (name.ok()?, phone.ok()?, email.ok()?);
        Some(ResidentContact { name, phone, email })
    });

    let attachments = attachment_refs("attachments", &request.attachments, limits, &mut v);

    match (case_id, grid, category, description, location, reported_at) {
        (Some(case_id), Some(grid), Some(category), Some(description), Some(location), Some(reported_at))
            if v.is_empty() =>
        {
            // Kept either way; flagged when the grid has a shape and the
            // point lies beyond the tolerance outside it.
            let outside_grid = reference
                .boundaries
                .distance_outside(&grid, location.latitude(), location.longitude())
                .and_then(|metres| OutsideGrid::beyond(metres, limits.grid_tolerance_m));
            Ok(Filing {
                case_id,
                grid,
                category,
                description,
                location,
                reported_at,
                severity_hint,
                contact: contact.map(gridcase_domain::Contact::Clear),
                attachments,
                outside_grid,
                channel: filer.channel,
                request_kind,
                reference: client_reference,
            })
        }
        _ => Err(v),
    }
}

/// Check a list of attachment references (shape only; whether each was
/// uploaded is checked against the store by the service).
pub fn attachment_refs(
    field: &str,
    refs: &[common::AttachmentRef],
    limits: &Limits,
    v: &mut Violations,
) -> Vec<AttachmentRef> {
    if refs.len() > MAX_ATTACHMENTS {
        v.add(field, "TOO_MANY", format!("at most {MAX_ATTACHMENTS} attachments, got {}", refs.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut parsed = Vec::new();
    for (index, attachment) in refs.iter().enumerate() {
        let at = |name: &str| format!("{field}[{index}].{name}");
        let sha256 = match Sha256Digest::parse(&attachment.sha256) {
            Ok(digest) if !seen.insert(digest.clone()) => {
                v.add(at("sha256"), "DUPLICATE", "is listed more than once");
                None
            }
            Ok(digest) => Some(digest),
            Err(e) => {
                v.add(at("sha256"), "MALFORMED", e);
                None
            }
        };
        if attachment.size == 0 || attachment.size > limits.max_attachment_bytes {
            v.add(at("size"), "OUT_OF_RANGE", format!("must be 1-{} bytes", limits.max_attachment_bytes));
        }
        if !CONTENT_TYPES.contains(&attachment.content_type.as_str()) {
            v.add(at("content_type"), "UNSUPPORTED", format!("must be one of {}", CONTENT_TYPES.join(", ")));
        }
        if let Some(sha256) = sha256 {
            parsed.push(AttachmentRef { sha256, size: attachment.size, content_type: attachment.content_type.clone() });
        }
    }
    parsed
}

fn text_rule(error: &gridcase_domain::TextError) -> &'static str {
    match error {
        gridcase_domain::TextError::Blank => "REQUIRED",
        gridcase_domain::TextError::TooLong { .. } => "TOO_LONG",
        gridcase_domain::TextError::ControlCharacters => "MALFORMED",
    }
}

/// An attachment upload checked part by part, as the parts arrive: the
/// metadata first (a supported content type), then chunks up to the limit;
/// [`Upload::finish`] checks that there was content and that its leading
/// bytes are of the declared type. Pure: the handler feeds it the stream.
pub struct Upload {
    content_type: Option<String>,
    content: Vec<u8>,
    limit: u64,
}

impl Upload {
    pub fn new(limit: u64) -> Self {
        Self { content_type: None, content: Vec::new(), limit }
    }

    /// The next part of the stream.
    pub fn part(&mut self, part: api::UploadAttachmentRequest) -> Result<(), tonic::Status> {
        use api::upload_attachment_request::Part;
        match (&self.content_type, part.part) {
            (None, Some(Part::Metadata(metadata))) => {
                if !CONTENT_TYPES.contains(&metadata.content_type.as_str()) {
                    return Err(Violations::one(
                        "metadata.content_type",
                        "UNSUPPORTED",
                        format!("must be one of {}", CONTENT_TYPES.join(", ")),
                    ));
                }
                self.content_type = Some(metadata.content_type);
                Ok(())
            }
            (None, _) => {
                Err(Violations::one("metadata", "REQUIRED", "the first message must carry the attachment's metadata"))
            }
            (Some(_), Some(Part::Chunk(chunk))) => {
                if self.content.len() as u64 + chunk.len() as u64 > self.limit {
                    let limit = self.limit;
                    return Err(Violations::one(
                        "chunk",
                        "TOO_LARGE",
                        format!("the attachment exceeds the limit of {limit} bytes"),
                    ));
                }
                self.content.extend_from_slice(&chunk);
                Ok(())
            }
            (Some(_), _) => {
                Err(Violations::one("metadata", "UNEXPECTED", "metadata may only come first; then send chunks"))
            }
        }
    }

    /// The end of the stream: the content type and the content, checked.
    pub fn finish(self) -> Result<(String, Vec<u8>), tonic::Status> {
        let Some(content_type) = self.content_type else {
            return Err(Violations::one(
                "metadata",
                "REQUIRED",
                "the first message must carry the attachment's metadata",
            ));
        };
        if self.content.is_empty() {
            return Err(Violations::one("chunk", "REQUIRED", "the attachment is empty"));
        }
        if let Err(found) = content_matches(&content_type, &self.content) {
            return Err(Violations::one(
                "metadata.content_type",
                "CONTENT_MISMATCH",
                format!("the content is not {content_type}: its leading bytes say {found}"),
            ));
        }
        Ok((content_type, self.content))
    }
}
