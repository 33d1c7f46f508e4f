//! Small value types of the case domain. Their serde names are part of the
//! stored-event wire format (see the envelope crate's snapshot tests): renaming
//! a variant here fails those snapshots rather than silently breaking history.

use std::fmt;

/// The tier decides a case's deadlines (see the dispatcher's policy).
/// Ordered from least to most pressing, so a severity hint can only raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Tier {
    Complex,
    Normal,
    Urgent,
    Critical,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Complex, Tier::Normal, Tier::Urgent, Tier::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "CRITICAL",
            Tier::Urgent => "URGENT",
            Tier::Normal => "NORMAL",
            Tier::Complex => "COMPLEX",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        Self::ALL.into_iter().find(|tier| tier.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted on a case, as its events record it (a token's role,
/// `gridcase_auth::TokenRole`, maps onto one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActorRole {
    /// 网格员
    GridWorker,
    /// 网格长
    GridLeader,
    /// 处置单位 / 职能部门
    HandlingUnit,
    /// 网格化管理指挥中心 / 综治中心
    CommandCentre,
    /// 县网格办 / 政法委 (reads and audits; changes nothing). Stored as
    /// `COUNTY_OFFICE`, as history has it.
    #[serde(rename = "COUNTY_OFFICE")]
    CountyAuditor,
    /// A gridcase service acting by policy (the dispatcher, the deadline watch).
    System,
    /// A partner system filing residents' requests (the 12345 platform, an
    /// Open311 client such as FixMyStreet).
    Partner,
}

impl ActorRole {
    pub const ALL: [ActorRole; 7] = [
        ActorRole::GridWorker,
        ActorRole::GridLeader,
        ActorRole::HandlingUnit,
        ActorRole::CommandCentre,
        ActorRole::CountyAuditor,
        ActorRole::System,
        ActorRole::Partner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorRole::GridWorker => "GRID_WORKER",
            ActorRole::GridLeader => "GRID_LEADER",
            ActorRole::HandlingUnit => "HANDLING_UNIT",
            ActorRole::CommandCentre => "COMMAND_CENTRE",
            ActorRole::CountyAuditor => "COUNTY_OFFICE",
            ActorRole::System => "SYSTEM",
            ActorRole::Partner => "PARTNER",
        }
    }

    pub fn parse(text: &str) -> Option<ActorRole> {
        Self::ALL.into_iter().find(|role| role.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Supervision (督办) level, ordered: it is only ever raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Supervision {
    #[default]
    None,
    Normal,
    YellowCard,
    RedCard,
}

/// The resident's evaluation (评价) after closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Feedback {
    /// 满意
    Satisfied,
    /// 基本满意
    BasicallySatisfied,
    /// 不满意
    Unsatisfied,
}

/// Where a filing came in (受理渠道).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    /// A grid worker's or grid leader's app (网格员上报); every filing
    /// recorded before channels were.
    #[default]
    GridWorker,
    /// A partner system through its API key: the 12345 platform, a city's
    /// reporting app or website, FixMyStreet over Open311.
    Partner,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::GridWorker, Channel::Partner];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::GridWorker => "GRID_WORKER",
            Channel::Partner => "PARTNER",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Self::ALL.into_iter().find(|channel| channel.as_str() == text)
    }

    pub fn is_grid_worker(&self) -> bool {
        *self == Channel::GridWorker
    }
}

/// What a resident asks for (诉求类型), as the 12345 hotline sorts requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestKind {
    /// 咨询
    Consultation,
    /// 求助
    Help,
    /// 投诉
    Complaint,
    /// 举报
    Report,
    /// 建议
    Suggestion,
    /// 表扬
    Praise,
}

impl RequestKind {
    pub const ALL: [RequestKind; 6] = [
        RequestKind::Consultation,
        RequestKind::Help,
        RequestKind::Complaint,
        RequestKind::Report,
        RequestKind::Suggestion,
        RequestKind::Praise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Consultation => "CONSULTATION",
            RequestKind::Help => "HELP",
            RequestKind::Complaint => "COMPLAINT",
            RequestKind::Report => "REPORT",
            RequestKind::Suggestion => "SUGGESTION",
            RequestKind::Praise => "PRAISE",
        }
    }

    pub fn parse(text: &str) -> Option<RequestKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }

    /// The name residents and operators read.
    pub fn chinese(self) -> &'static str {
        match self {
            RequestKind::Consultation => "咨询",
            RequestKind::Help => "求助",
            RequestKind::Complaint => "投诉",
            RequestKind::Report => "举报",
            RequestKind::Suggestion => "建议",
            RequestKind::Praise => "表扬",
        }
    }
}

/// The state of a case in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// 已上报/待受理
    Reported,
    /// 已立案/待派遣
    Registered,
    /// 不予立案/作废 (final)
    Voided,
    /// 已派遣/待签收
    Dispatched,
    /// 处置中
    InProgress,
    /// 挂账/缓办
    OnHold,
    /// 已办结/待核查
    Resolved,
    /// 已结案 (消号); reopened when the resident is unsatisfied
    Closed,
    /// 撤销 (final)
    Cancelled,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Reported,
        State::Registered,
        State::Voided,
        State::Dispatched,
        State::InProgress,
        State::OnHold,
        State::Resolved,
        State::Closed,
        State::Cancelled,
    ];

    /// Final states accept no further command.
    pub fn is_final(self) -> bool {
        matches!(self, State::Voided | State::Cancelled)
    }

    /// Work remains: neither closed (a closed case may still be reopened,
    /// but is no open work) nor final. What boards and gauges count as open.
    pub fn is_open(self) -> bool {
        !(self.is_final() || self == State::Closed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Reported => "REPORTED",
            State::Registered => "REGISTERED",
            State::Voided => "VOIDED",
            State::Dispatched => "DISPATCHED",
            State::InProgress => "IN_PROGRESS",
            State::OnHold => "ON_HOLD",
            State::Resolved => "RESOLVED",
            State::Closed => "CLOSED",
            State::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The clocks a case runs (处置时限).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Clock {
    /// 受理: from REPORTED until registered or voided.
    Register,
    /// 签收: from DISPATCHED until acknowledged.
    Acknowledge,
    /// 处置: from DISPATCHED until resolved (paused while ON_HOLD).
    Resolve,
    /// 核查: from RESOLVED until verified.
    Verify,
    /// 答复: a resident's request, from its filing until the resident is
    /// answered (its deadline is dropped by the reply), in every state but
    /// the final ones (a voided or withdrawn request may still be answered,
    /// on no clock).
    Reply,
    /// 回访: a resident's request, from its closure until the resident is
    /// called back and reached; its deadline is dropped by that callback.
    Callback,
}

impl Clock {
    /// Every clock, in the order a case meets them.
    pub const ALL: [Clock; 6] =
        [Clock::Register, Clock::Acknowledge, Clock::Resolve, Clock::Verify, Clock::Reply, Clock::Callback];

    /// Whether this clock runs while a case is in `state` (and holds its
    /// deadline: the reply and a reached callback drop theirs).
    pub fn runs_in(self, state: State) -> bool {
        match self {
            Clock::Register => state == State::Reported,
            Clock::Acknowledge => state == State::Dispatched,
            Clock::Resolve => matches!(state, State::Dispatched | State::InProgress),
            Clock::Verify => state == State::Resolved,
            Clock::Reply => !state.is_final(),
            Clock::Callback => state == State::Closed,
        }
    }
}

/// How a resident was answered (答复方式).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplyMethod {
    /// 电话
    Phone,
    /// 短信
    Sms,
    /// 当面
    InPerson,
    /// Through the partner system the request came from (an Open311 update).
    Partner,
}

/// How a clock of a case counts its time: working time (on whose working
/// hours; none: the default hours, the command centre's) or calendar time.
/// Decided when its deadline is set, and recorded with it, so that a
/// policy changed later does not change how an existing deadline runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ClockTerms {
    pub working: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_of: Option<crate::OrgCode>,
}

/// What the deadline watch records about a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClockMark {
    /// The warning threshold (yellow light) was passed.
    Warning,
    /// The deadline passed (超期).
    Overdue,
}

/// Where the reporter stood, in WGS-84 microdegrees (integers keep events
/// exactly comparable and hash-stable), and the address they gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub latitude_e6: i32,
    pub longitude_e6: i32,
    pub address: Option<String>,
}

/// A filing whose coordinates lie outside the grid it names, further than
/// the tolerance intake allowed: kept, and flagged for the command centre.
/// Both figures in whole metres; the tolerance is the one in force then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutsideGrid {
    pub distance_m: u32,
    pub tolerance_m: u32,
}

impl OutsideGrid {
    /// The flag for a point `distance_m` outside its grid, if that is beyond
    /// `tolerance_m` (a point within the tolerance is not flagged).
    pub fn beyond(distance_m: f64, tolerance_m: u32) -> Option<Self> {
        (distance_m > f64::from(tolerance_m))
            .then(|| Self { distance_m: distance_m.round().min(f64::from(u32::MAX)) as u32, tolerance_m })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("latitude must be a number between -90 and 90")]
    Latitude,
    #[error("longitude must be a number between -180 and 180")]
    Longitude,
    #[error("must lie within China (latitude 3.8-53.6, longitude 73.4-135.1)")]
    OutsideChina,
    #[error("address must be at most {max} characters")]
    AddressTooLong { max: usize },
}

impl Location {
    pub const ADDRESS_MAX: usize = 200;

    pub fn from_degrees(latitude: f64, longitude: f64, address: Option<&str>) -> Result<Self, LocationError> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(LocationError::Latitude);
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(LocationError::Longitude);
        }
        if !(3.8..=53.6).contains(&latitude) || !(73.4..=135.1).contains(&longitude) {
            return Err(LocationError::OutsideChina);
        }
        let address = address.map(str::trim).filter(|a| !a.is_empty());
        if let Some(address) = address
            && address.chars().count() > Self::ADDRESS_MAX
        {
            return Err(LocationError::AddressTooLong { max: Self::ADDRESS_MAX });
        }
        Ok(Self {
            latitude_e6: (latitude * 1e6).round() as i32,
            longitude_e6: (longitude * 1e6).round() as i32,
            address: address.map(str::to_owned),
        })
    }

    pub fn latitude(&self) -> f64 {
        f64::from(self.latitude_e6) / 1e6
    }

    pub fn longitude(&self) -> f64 {
        f64::from(self.longitude_e6) / 1e6
    }
}

/// A SHA-256 digest as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err("must be 64 hexadecimal digits (a SHA-256 digest)")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", &self.0[..12])
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sha256Digest> for String {
    fn from(value: Sha256Digest) -> Self {
        value.0
    }
}

/// A photo or other file stored in the attachment stream, referenced by its
/// content digest and size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachmentRef {
    pub sha256: Sha256Digest,
    pub size: u64,
    pub content_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_ordered_by_pressure() {
        assert!(Tier::Critical > Tier::Urgent && Tier::Urgent > Tier::Normal && Tier::Normal > Tier::Complex);
        assert_eq!(Tier::parse("urgent"), Some(Tier::Urgent));
        assert_eq!(Tier::parse("nope"), None);
    }

    #[test]
    fn only_a_point_beyond_the_tolerance_is_flagged() {
        assert_eq!(OutsideGrid::beyond(0.0, 200), None);
        assert_eq!(OutsideGrid::beyond(200.0, 200), None);
        assert_eq!(OutsideGrid::beyond(200.6, 200), Some(OutsideGrid { distance_m: 201, tolerance_m: 200 }));
        assert_eq!(OutsideGrid::beyond(12.0, 0), Some(OutsideGrid { distance_m: 12, tolerance_m: 0 }));
    }

    #[test]
    fn locations() {
        let here = Location::from_degrees(39.9042, 116.4074, Some(" 东城区 ")).unwrap();
        assert_eq!((here.latitude_e6, here.longitude_e6), (39_904_200, 116_407_400));
        assert_eq!(here.address.as_deref(), Some("东城区"));
        assert_eq!(Location::from_degrees(f64::NAN, 116.0, None), Err(LocationError::Latitude));
        assert_eq!(Location::from_degrees(91.0, 116.0, None), Err(LocationError::Latitude));
        assert_eq!(Location::from_degrees(39.0, 181.0, None), Err(LocationError::Longitude));
        assert_eq!(Location::from_degrees(48.85, 2.35, None), Err(LocationError::OutsideChina));
    }
}

/// Stable upper-case names (the same as the serde names) for read models
/// and exports, and their parsing.
macro_rules! names {
    ($type:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

names!(State {
    Reported => "REPORTED",
    Registered => "REGISTERED",
    Voided => "VOIDED",
    Dispatched => "DISPATCHED",
    InProgress => "IN_PROGRESS",
    OnHold => "ON_HOLD",
    Resolved => "RESOLVED",
    Closed => "CLOSED",
    Cancelled => "CANCELLED",
});
names!(Supervision { None => "NONE", Normal => "NORMAL", YellowCard => "YELLOW_CARD", RedCard => "RED_CARD" });
names!(Feedback { Satisfied => "SATISFIED", BasicallySatisfied => "BASICALLY_SATISFIED", Unsatisfied => "UNSATISFIED" });
names!(Clock {
    Register => "REGISTER",
    Acknowledge => "ACKNOWLEDGE",
    Resolve => "RESOLVE",
    Verify => "VERIFY",
    Reply => "REPLY",
    Callback => "CALLBACK",
});
names!(ReplyMethod { Phone => "PHONE", Sms => "SMS", InPerson => "IN_PERSON", Partner => "PARTNER" });
names!(ClockMark { Warning => "WARNING", Overdue => "OVERDUE" });

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_match_the_serde_names_and_parse_back() {
        for state in State::ALL {
            assert_eq!(State::from_name(state.name()), Some(state));
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{}\"", state.name()));
            assert_eq!(state.name(), state.as_str());
        }
        for level in [Supervision::None, Supervision::Normal, Supervision::YellowCard, Supervision::RedCard] {
            assert_eq!(Supervision::from_name(level.name()), Some(level));
            assert_eq!(serde_json::to_string(&level).unwrap(), format!("\"{}\"", level.name()));
        }
        for clock in [Clock::Register, Clock::Acknowledge, Clock::Resolve, Clock::Verify] {
            assert_eq!(Clock::from_name(clock.name()), Some(clock));
            assert_eq!(serde_json::to_string(&clock).unwrap(), format!("\"{}\"", clock.name()));
        }
        for feedback in [Feedback::Satisfied, Feedback::BasicallySatisfied, Feedback::Unsatisfied] {
            assert_eq!(Feedback::from_name(feedback.name()), Some(feedback));
            assert_eq!(serde_json::to_string(&feedback).unwrap(), format!("\"{}\"", feedback.name()));
        }
        assert_eq!(State::from_name("LOST"), None);
    }
}
