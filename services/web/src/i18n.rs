//! The console's words in Chinese (the interface language) and English:
//! one table of phrases, and the names of the API's enums and event kinds.

use gridcase_proto::common::v1 as common;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "zh" | "zh-CN" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn parse_flag(text: &str) -> Result<Lang, String> {
        Lang::parse(text).ok_or_else(|| format!("{text:?} is not a language the console speaks (zh or en)"))
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    fn pick(self, (zh, en): (&'static str, &'static str)) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// A phrase of the interface by its key (the key itself when none is
    /// known: a unit test checks every key the pages use).
    pub fn t(self, key: &'static str) -> &'static str {
        PHRASES.iter().find(|(k, _, _)| *k == key).map_or(key, |(_, zh, en)| self.pick((zh, en)))
    }

    pub fn state(self, state: i32) -> &'static str {
        use common::CaseState as S;
        self.pick(match S::try_from(state).unwrap_or(S::Unspecified) {
            S::Reported => ("待受理", "Reported"),
            S::Registered => ("待派遣", "Registered"),
            S::Voided => ("不予立案", "Voided"),
            S::Dispatched => ("待签收", "Dispatched"),
            S::InProgress => ("处置中", "In progress"),
            S::OnHold => ("挂账", "On hold"),
            S::Resolved => ("待核查", "Resolved"),
            S::Closed => ("已结案", "Closed"),
            S::Cancelled => ("已撤销", "Cancelled"),
            S::Unspecified => ("—", "—"),
        })
    }

    pub fn request_kind(self, kind: i32) -> &'static str {
        use common::RequestKind as K;
        self.pick(match K::try_from(kind).unwrap_or(K::Unspecified) {
            K::Consultation => ("咨询", "Consultation"),
            K::Help => ("求助", "Help"),
            K::Complaint => ("投诉", "Complaint"),
            K::Report => ("举报", "Report"),
            K::Suggestion => ("建议", "Suggestion"),
            K::Praise => ("表扬", "Praise"),
            K::Unspecified => ("—", "—"),
        })
    }

    pub fn channel(self, channel: i32) -> &'static str {
        use common::Channel as C;
        self.pick(match C::try_from(channel).unwrap_or(C::Unspecified) {
            C::GridWorker => ("网格员上报", "Grid worker"),
            C::Partner => ("合作平台（12345/Open311）", "Partner system (12345/Open311)"),
            C::Unspecified => ("网格员上报", "Grid worker"),
        })
    }

    pub fn tier(self, tier: i32) -> &'static str {
        use common::Tier as T;
        self.pick(match T::try_from(tier).unwrap_or(T::Unspecified) {
            T::Critical => ("特急", "Critical"),
            T::Urgent => ("紧急", "Urgent"),
            T::Normal => ("一般", "Normal"),
            T::Complex => ("复杂", "Complex"),
            T::Unspecified => ("—", "—"),
        })
    }

    pub fn clock(self, clock: i32) -> &'static str {
        use common::Clock as C;
        self.pick(match C::try_from(clock).unwrap_or(C::Unspecified) {
            C::Register => ("受理", "Register"),
            C::Acknowledge => ("签收", "Acknowledge"),
            C::Resolve => ("处置", "Resolve"),
            C::Verify => ("核查", "Verify"),
            C::Reply => ("答复", "Reply"),
            C::Callback => ("回访", "Callback"),
            C::Unspecified => ("—", "—"),
        })
    }

    pub fn supervision(self, level: i32) -> &'static str {
        use common::Supervision as S;
        self.pick(match S::try_from(level).unwrap_or(S::Unspecified) {
            S::None | S::Unspecified => ("", ""),
            S::Normal => ("督办", "Supervised"),
            S::YellowCard => ("黄牌", "Yellow card"),
            S::RedCard => ("红牌", "Red card"),
        })
    }

    pub fn feedback(self, feedback: i32) -> &'static str {
        use common::Feedback as F;
        self.pick(match F::try_from(feedback).unwrap_or(F::Unspecified) {
            F::Satisfied => ("满意", "Satisfied"),
            F::BasicallySatisfied => ("基本满意", "Basically satisfied"),
            F::Unsatisfied => ("不满意", "Unsatisfied"),
            F::Unspecified => ("—", "—"),
        })
    }

    pub fn role(self, role: &str) -> &'static str {
        self.pick(match role {
            "grid_worker" => ("网格员", "Grid worker"),
            "grid_leader" => ("网格长", "Grid leader"),
            "handling_unit" => ("处置单位", "Handling unit"),
            "command_centre" | "COMMAND_CENTRE" => ("指挥中心", "Command centre"),
            "county_auditor" | "COUNTY_OFFICE" => ("县级督查", "County auditor"),
            "admin" => ("管理员", "Administrator"),
            "system" | "SYSTEM" => ("系统", "System"),
            "GRID_WORKER" => ("网格员", "Grid worker"),
            "HANDLING_UNIT" => ("处置单位", "Handling unit"),
            "GRID_LEADER" => ("网格长", "Grid leader"),
            _ => ("—", "—"),
        })
    }

    /// An event kind as stored (`Event::KINDS`), in words.
    pub fn event(self, kind: &str) -> &'static str {
        self.pick(match kind {
            "filed" => ("上报", "Filed"),
            "registered" => ("立案", "Registered"),
            "voided" => ("不予立案", "Voided"),
            "dispatched" => ("派遣", "Dispatched"),
            "acknowledged" => ("签收", "Acknowledged"),
            "returned" => ("退回", "Returned"),
            "reassigned" => ("改派", "Reassigned"),
            "progress_added" => ("进展", "Progress"),
            "report_added" => ("再次上报", "Reported again"),
            "merged_into" => ("并案（并入）", "Merged into"),
            "duplicate_merged" => ("并案（并入重复件）", "Duplicate merged in"),
            "extension_requested" => ("申请延期", "Extension requested"),
            "extension_approved" => ("延期批准", "Extension approved"),
            "extension_rejected" => ("延期驳回", "Extension rejected"),
            "hold_requested" => ("申请挂账", "Hold requested"),
            "hold_approved" => ("挂账批准", "Hold approved"),
            "hold_rejected" => ("挂账驳回", "Hold rejected"),
            "resumed" => ("恢复办理", "Resumed"),
            "resolved" => ("办结", "Resolved"),
            "verification_passed" => ("核查通过", "Verified"),
            "verification_failed" => ("核查不通过", "Rework"),
            "feedback_recorded" => ("评价", "Feedback"),
            "reopened" => ("重新办理", "Reopened"),
            "cancelled" => ("撤销", "Cancelled"),
            "supervised" => ("督办", "Supervised"),
            "urgency_set" => ("加急", "Urgency set"),
            "deadline_set" => ("时限设定", "Deadline set"),
            "clock_marked" => ("时限提醒", "Deadline mark"),
            "resident_data_erased" => ("删除居民信息", "Resident data erased"),
            "replied" => ("答复", "Replied"),
            "callback_recorded" => ("回访", "Callback"),
            _ => ("其他事件", "Other event"),
        })
    }
}

/// The interface's phrases: key, Chinese, English.
const PHRASES: &[(&str, &str, &str)] = &[
    ("title", "网格事件指挥台", "gridcase console"),
    ("board", "大屏", "Board"),
    ("desk", "督办台", "Desk"),
    ("ledger", "台账", "Ledgers"),
    ("sign_in", "登录", "Sign in"),
    ("sign_out", "退出", "Sign out"),
    ("dev_sign_in", "开发登录", "Development sign-in"),
    (
        "dev_sign_in_note",
        "仅在服务使用开发密钥运行时可用。",
        "Only available while the services run with a development secret.",
    ),
    (
        "dev_sign_in_off",
        "此服务器未启用开发登录，请通过统一身份认证登录。",
        "Development sign-in is not enabled on this server; sign in through your identity provider.",
    ),
    ("session_expired", "登录已过期，请重新登录。", "Your session has expired; please sign in again."),
    ("subject", "账号", "Account"),
    ("role", "角色", "Role"),
    ("organisation", "单位", "Organisation"),
    ("territory", "辖区", "Territory"),
    ("open", "在办", "Open"),
    ("due_today", "今日到期", "Due today"),
    ("overdue", "超期", "Overdue"),
    ("on_hold", "挂账", "On hold"),
    ("yellow_card", "黄牌", "Yellow card"),
    ("red_card", "红牌", "Red card"),
    ("live_feed", "实时动态", "Live feed"),
    ("live_connecting", "正在连接…", "Connecting…"),
    ("live_on", "实时", "Live"),
    ("live_off", "连接中断，正在重连", "Disconnected, reconnecting"),
    ("as_of", "截至", "As of"),
    ("map", "一张图", "Grid map"),
    (
        "map_no_shapes",
        "参考数据中没有这些网格的边界（grids.geojson）。",
        "The reference data has no boundaries for these grids (grids.geojson).",
    ),
    ("map_pending", "待受理/待派遣", "Awaiting the centre"),
    ("map_handling", "处置中", "With a unit"),
    ("map_held", "挂账", "On hold"),
    ("map_resolved", "待核查", "Awaiting verification"),
    ("map_cut", "仅显示", "Showing"),
    ("outside_grid", "位置超出网格", "Outside its grid by"),
    (
        "outside_grid_note",
        "上报位置在所报网格边界之外（超出容差），请核实。",
        "The reported position lies outside the grid's boundary (beyond the tolerance); please check.",
    ),
    ("location", "位置", "Location"),
    ("photos", "照片与附件", "Photos and files"),
    ("due_soon_list", "24小时内到期", "Due within 24 hours"),
    ("sort", "排序", "Order"),
    ("sort_due", "最先到期", "Due soonest"),
    ("sort_filed", "最新上报", "Newest filed"),
    ("next_due", "最近时限", "Next deadline"),
    ("turned_overdue", "新增超期", "Deadlines passed"),
    ("oidc_sign_in", "统一身份认证登录", "Sign in with the identity provider"),
    (
        "oidc_unavailable",
        "统一身份认证暂不可用，请稍后再试。",
        "The identity provider cannot be reached; please try again shortly.",
    ),
    (
        "oidc_mismatch",
        "这次登录不是本浏览器发起的，或已过期，请重新登录。",
        "This sign-in was not started by this browser, or it expired; please sign in again.",
    ),
    ("oidc_refused", "统一身份认证未通过", "The identity provider refused the sign-in"),
    ("signed_in_continue", "已登录，继续", "Signed in: continue"),
    ("case", "案件", "Case"),
    ("state", "状态", "State"),
    ("tier", "等级", "Tier"),
    ("grid", "网格", "Grid"),
    ("village", "村（社区）", "Village"),
    ("category", "类别", "Category"),
    ("unit", "处置单位", "Unit"),
    ("filed_at", "上报时间", "Filed"),
    ("reported_at", "发现时间", "Seen"),
    ("description", "描述", "Description"),
    ("reported_by", "上报人", "Reported by"),
    ("contact", "联系方式", "Contact"),
    ("contact_erased", "已删除", "erased"),
    ("contact_none", "未留", "none given"),
    ("supervision", "督办", "Supervision"),
    ("urgent", "加急", "Urgent"),
    ("deadlines", "时限", "Deadlines"),
    ("clock", "环节", "Clock"),
    ("due", "截止", "Due"),
    ("remaining", "剩余", "Remaining"),
    ("overdue_by", "已超期", "Overdue by"),
    ("paused", "暂停", "paused"),
    ("working_time", "工作时间", "working time"),
    ("calendar_time", "自然时间", "calendar time"),
    ("history", "流转记录", "History"),
    (
        "chain_ok",
        "记录完整：每一条记录都与前一条相连，未被改动。",
        "History intact: every event links to the one before it and none was changed.",
    ),
    ("chain_broken", "记录校验未通过：", "History check failed: "),
    ("time", "时间", "Time"),
    ("event", "事件", "Event"),
    ("actor", "操作人", "By"),
    ("reason", "原因/说明", "Reason / note"),
    ("actions", "操作", "Actions"),
    ("no_actions", "您的角色在此案件上没有可执行的操作。", "Your role has no action on this case."),
    ("register", "立案", "Register"),
    ("void", "不予立案", "Void"),
    ("dispatch", "派遣", "Dispatch"),
    ("reassign", "改派", "Reassign"),
    ("acknowledge", "签收", "Acknowledge"),
    ("return", "退回", "Return"),
    ("resolve", "办结", "Resolve"),
    ("request_extension", "申请延期", "Request extension"),
    ("request_hold", "申请挂账", "Request hold"),
    ("approve_extension", "批准延期", "Approve extension"),
    ("reject_extension", "驳回延期", "Reject extension"),
    ("approve_hold", "批准挂账", "Approve hold"),
    ("reject_hold", "驳回挂账", "Reject hold"),
    ("verify_pass", "核查通过", "Verify: passed"),
    ("verify_rework", "核查不通过（返工）", "Verify: rework"),
    ("cancel", "撤销", "Cancel"),
    ("supervise", "督办", "Supervise"),
    ("set_urgent", "加急", "Mark urgent"),
    ("erase", "删除居民信息", "Erase resident data"),
    ("reply", "答复居民", "Answer the resident"),
    ("callback", "回访", "Call back"),
    ("method", "答复方式", "How"),
    ("REPLY_METHOD_PHONE", "电话", "Phone"),
    ("REPLY_METHOD_SMS", "短信", "SMS"),
    ("REPLY_METHOD_IN_PERSON", "当面", "In person"),
    ("REPLY_METHOD_PARTNER", "经合作平台", "Through the partner system"),
    ("outcome", "回访结果", "Outcome"),
    ("reply_on_time_rate", "按时答复率", "Answered on time"),
    ("callback_rate", "回访率", "Called back"),
    ("satisfaction_rate", "满意率", "Satisfied"),
    ("kind", "诉求类型", "Kind of request"),
    ("NOT_REACHED", "未联系上", "Not reached"),
    ("FEEDBACK_SATISFIED", "满意", "Satisfied"),
    ("FEEDBACK_BASICALLY_SATISFIED", "基本满意", "Basically satisfied"),
    ("FEEDBACK_UNSATISFIED", "不满意", "Unsatisfied"),
    ("request_kind", "诉求类型", "Kind of request"),
    ("channel", "受理渠道", "Channel"),
    ("working_days", "工作日", "working days"),
    ("level", "督办级别", "Level"),
    ("done", "已完成：", "Done: "),
    ("refused", "未能执行：", "Not done: "),
    (
        "conflict",
        "另一位操作员刚刚处理了此案件，页面已显示当前状态，请确认后再操作。",
        "Another operator changed this case a moment ago; the page now shows its current state. Check it before acting again.",
    ),
    ("not_found", "未找到此案件（或不在您的辖区内）。", "No such case (or not in your territory)."),
    ("forbidden", "您的角色不能执行此操作。", "Your role may not do this."),
    (
        "unavailable",
        "服务暂时不可用，请稍后重试（同一操作不会重复执行）。",
        "The service is unavailable for now; try again (the same action is never carried out twice).",
    ),
    ("invalid", "请检查以下字段：", "Please check these fields:"),
    ("bad_csrf", "页面已过期，请刷新后再提交。", "This page is out of date; reload it and submit again."),
    ("overdue_list", "超期案件", "Overdue cases"),
    ("all_open", "全部在办", "All open"),
    ("filter", "筛选", "Filter"),
    ("next_page", "下一页", "Next page"),
    ("first_page", "第一页", "First page"),
    ("export_csv", "导出 CSV", "Export CSV"),
    ("export_xlsx", "导出 Excel", "Export Excel"),
    ("selected", "对选中案件", "Selected cases"),
    ("none_found", "没有符合条件的案件。", "No cases match."),
    ("any", "全部", "Any"),
    ("period", "周期", "Period"),
    ("day", "日", "Day"),
    ("month", "月", "Month"),
    ("today", "今日", "Today"),
    ("total", "合计", "Total"),
    ("from", "从", "From"),
    ("to", "到", "To"),
    ("org_kind", "统计维度", "Per"),
    ("township", "乡镇（街道）", "Township"),
    ("worker", "网格员", "Worker"),
    ("filed", "上报", "Filed"),
    ("registered", "立案", "Registered"),
    ("closed", "结案", "Closed"),
    ("closed_on_time", "按期结案", "Closed on time"),
    ("closure_rate", "结案率", "Closure rate"),
    ("on_time_closure_rate", "按期结案率", "On-time closure rate"),
    ("satisfaction", "满意", "Satisfied"),
    ("overdue_open", "超期未办结", "Overdue open"),
    ("timezone_note", "时间为北京时间 (Asia/Shanghai, UTC+8)", "Times in Beijing time (Asia/Shanghai, UTC+8)"),
    ("language", "English", "中文"),
    ("submit", "提交", "Submit"),
    ("approve", "批准", "Approve"),
    ("days", "天数", "Days"),
    ("note", "说明", "Note"),
    ("trend", "近30天趋势", "Last 30 days"),
    ("latest", "最新上报", "Latest reports"),
    ("page_not_found", "没有这个页面。", "There is no such page."),
    (
        "kept_typed",
        "已重新登录，您填写的内容已保留，请确认后提交。",
        "You are signed in again; what you typed is kept. Check it and submit.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_kind_has_words_in_both_languages() {
        for kind in gridcase_domain::Event::KINDS {
            for lang in [Lang::Zh, Lang::En] {
                assert_ne!(lang.event(kind), lang.event("no such kind"), "{kind} has no words in {lang:?}");
            }
        }
    }

    #[test]
    fn phrase_keys_are_unique() {
        let mut keys: Vec<&str> = PHRASES.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "a phrase key is defined twice");
    }
}

#[cfg(test)]
mod keys {
    use super::PHRASES;

    /// Every `.t("key")` the console's sources use names a phrase.
    #[test]
    fn every_phrase_the_pages_use_exists() {
        let sources = [
            include_str!("pages/board.rs"),
            include_str!("pages/case.rs"),
            include_str!("pages/chart.rs"),
            include_str!("pages/desk.rs"),
            include_str!("pages/layout.rs"),
            include_str!("pages/ledger.rs"),
            include_str!("pages/signin.rs"),
            include_str!("session.rs"),
            include_str!("upstream.rs"),
            include_str!("lib.rs"),
        ];
        let mut used = 0;
        for source in sources {
            for piece in source.split(".t(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                assert!(PHRASES.iter().any(|(k, _, _)| *k == key), "the phrase {key:?} is used but not defined");
                used += 1;
            }
        }
        assert!(used > 50, "found only {used} uses: the scan is broken");
    }
}
