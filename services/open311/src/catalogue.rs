//! The service catalogue: gridcase's category taxonomy as Open311 services,
//! and each service's definition (the attributes a request may carry).
//! Complete and stable: every category, in code order, from the reference
//! data the services load too.

use gridcase_domain::{CategoryCode, RequestKind};
use gridcase_reference::Reference;

use crate::document::{Document, Item, Value};

/// The attribute naming the grid (网格); found from the coordinates when absent.
pub const GRID_CODE: &str = "grid_code";
/// The partner's own id of the request (FixMyStreet's report id): a retry
/// with the same one is the same request.
pub const CLIENT_REFERENCE: &str = "fixmystreet_id";
/// What the resident asks for (诉求类型).
pub const REQUEST_KIND: &str = "request_kind";

pub fn services(reference: &Reference) -> Document {
    let items = reference
        .taxonomy
        .iter()
        .map(|category| {
            Item::default()
                .text("service_code", category.code.as_str())
                .text("service_name", category.name.clone())
                .text("description", format!("{}：{}", category.major, category.name))
                .value("metadata", Value::Bool(true))
                .text("type", "realtime")
                .text("keywords", category.major.clone())
                .text("group", category.major.clone())
                .value("groups", Value::Texts("group", vec![category.major.clone()]))
        })
        .collect();
    Document::List { root: "services", item: "service", items }
}

fn attribute(code: &str, datatype: &str, required: bool, order: i64, description: &str) -> Item {
    Item::default()
        .value("variable", Value::Bool(true))
        .text("code", code)
        .text("datatype", datatype)
        .value("required", Value::Bool(required))
        .text("datatype_description", "")
        .value("order", Value::Int(order))
        .text("description", description)
}

/// A service's definition; `None` for a code the catalogue does not hold.
pub fn definition(reference: &Reference, code: &str) -> Option<Document> {
    let category = reference.taxonomy.category(&CategoryCode::parse(code).ok()?)?;
    let kinds = RequestKind::ALL
        .into_iter()
        .map(|kind| Item::default().text("key", kind.as_str()).text("name", kind.chinese()))
        .collect();
    let attributes = vec![
        attribute(GRID_CODE, "string", false, 1, "网格编码（15 位网格或 17 位微网格）。不填时按坐标所在网格受理"),
        attribute(
            CLIENT_REFERENCE,
            "string",
            false,
            2,
            "提交方自己的诉求编号：同一编号重复提交视为同一诉求（重试不会重复立案）",
        )
        .text("automated", "server_set"),
        attribute(REQUEST_KIND, "singlevaluelist", true, 3, "诉求类型（必填：决定答复时限）")
            .value("values", Value::Items("value", kinds)),
    ];
    Some(Document::Single {
        root: "service_definition",
        item: Item::default()
            .text("service_code", category.code.as_str())
            .value("attributes", Value::Items("attribute", attributes)),
    })
}
