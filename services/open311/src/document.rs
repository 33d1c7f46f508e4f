//! The documents the gateway answers with, built once and written as XML
//! (Open311's first format) or JSON. A document is a root element holding
//! items (`<services><service>…`), or a single item
//! (`<service_definition>…`); an item is an ordered list of fields.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::{Map, Value as Json};

/// The two formats of GeoReport v2, chosen by the path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    /// `services.xml` → (`services`, Xml); `None` without a known extension.
    pub fn split(file: &str) -> Option<(&str, Format)> {
        if let Some(stem) = file.strip_suffix(".xml") {
            Some((stem, Format::Xml))
        } else {
            file.strip_suffix(".json").map(|stem| (stem, Format::Json))
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "text/xml; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Bool(bool),
    Int(i64),
    /// A coordinate: six decimals in XML, a number in JSON.
    Degrees(f64),
    /// Nested items: `<attributes><attribute>…</attribute></attributes>`.
    Items(&'static str, Vec<Item>),
    /// Repeated text: `<groups><group>…</group></groups>`.
    Texts(&'static str, Vec<String>),
}

/// One element's fields, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item(pub Vec<(&'static str, Value)>);

impl Item {
    pub fn text(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.push((name, Value::Text(value.into())));
        self
    }

    pub fn value(mut self, name: &'static str, value: Value) -> Self {
        self.0.push((name, value));
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// `<root><item>…</item>…</root>`; in JSON an array of objects.
    List { root: &'static str, item: &'static str, items: Vec<Item> },
    /// `<root>…</root>`; in JSON one object.
    Single { root: &'static str, item: Item },
}

impl Document {
    pub fn render(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Xml => self.xml(),
            Format::Json => serde_json::to_vec(&self.json()).expect("JSON values serialise"),
        }
    }

    fn xml(&self) -> Vec<u8> {
        let mut writer = Writer::new(Vec::new());
        let mut write = |event: Event<'_>| writer.write_event(event).expect("writing to memory");
        write(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
        match self {
            Document::List { root, item, items } => {
                write(Event::Start(BytesStart::new(*root)));
                for one in items {
                    xml_item(&mut write, item, one);
                }
                write(Event::End(BytesEnd::new(*root)));
            }
            Document::Single { root, item } => xml_item(&mut write, root, item),
        }
        writer.into_inner()
    }

    fn json(&self) -> Json {
        match self {
            Document::List { items, .. } => Json::Array(items.iter().map(json_item).collect()),
            Document::Single { item, .. } => json_item(item),
        }
    }
}

fn xml_item(write: &mut impl FnMut(Event<'_>), name: &str, item: &Item) {
    write(Event::Start(BytesStart::new(name)));
    for (field, value) in &item.0 {
        match value {
            Value::Items(child, items) => {
                write(Event::Start(BytesStart::new(*field)));
                for one in items {
                    xml_item(write, child, one);
                }
                write(Event::End(BytesEnd::new(*field)));
            }
            Value::Texts(child, texts) => {
                write(Event::Start(BytesStart::new(*field)));
                for text in texts {
                    xml_text(write, child, text);
                }
                write(Event::End(BytesEnd::new(*field)));
            }
            Value::Text(text) => xml_text(write, field, text),
            Value::Bool(b) => xml_text(write, field, if *b { "true" } else { "false" }),
            Value::Int(n) => xml_text(write, field, &n.to_string()),
            Value::Degrees(d) => xml_text(write, field, &format!("{d:.6}")),
        }
    }
    write(Event::End(BytesEnd::new(name)));
}

fn xml_text(write: &mut impl FnMut(Event<'_>), name: &str, text: &str) {
    if text.is_empty() {
        write(Event::Empty(BytesStart::new(name)));
    } else {
        write(Event::Start(BytesStart::new(name)));
        write(Event::Text(BytesText::new(text)));
        write(Event::End(BytesEnd::new(name)));
    }
}

fn json_item(item: &Item) -> Json {
    let mut object = Map::new();
    for (field, value) in &item.0 {
        let json = match value {
            Value::Text(text) => Json::String(text.clone()),
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(n) => Json::from(*n),
            Value::Degrees(d) => Json::from((d * 1e6).round() / 1e6),
            Value::Items(_, items) => Json::Array(items.iter().map(json_item).collect()),
            Value::Texts(_, texts) => Json::Array(texts.iter().cloned().map(Json::String).collect()),
        };
        object.insert((*field).to_owned(), json);
    }
    Json::Object(object)
}

/// An error as GeoReport v2 writes it: `<errors><error><code/><description/>`.
pub fn errors(code: u16, descriptions: &[String]) -> Document {
    Document::List {
        root: "errors",
        item: "error",
        items: descriptions
            .iter()
            .map(|d| Item::default().value("code", Value::Int(i64::from(code))).text("description", d.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_text_and_json_keeps_types() {
        let document = Document::List {
            root: "services",
            item: "service",
            items: vec![
                Item::default()
                    .text("service_code", "0101")
                    .text("service_name", "暴露垃圾 <&>")
                    .value("metadata", Value::Bool(true))
                    .value("groups", Value::Texts("group", vec!["市容环境".into()]))
                    .text("keywords", ""),
            ],
        };
        let xml = String::from_utf8(document.render(Format::Xml)).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><services><service><service_code>0101</service_code>\
             <service_name>暴露垃圾 &lt;&amp;&gt;</service_name><metadata>true</metadata>\
             <groups><group>市容环境</group></groups><keywords/></service></services>"
        );
        let json: Json = serde_json::from_slice(&document.render(Format::Json)).unwrap();
        assert_eq!(json[0]["service_name"], "暴露垃圾 <&>");
        assert_eq!(json[0]["metadata"], true);
        assert_eq!(json[0]["groups"][0], "市容环境");
    }

    #[test]
    fn coordinates_keep_six_decimals() {
        let document =
            Document::Single { root: "request", item: Item::default().value("lat", Value::Degrees(30.2741)) };
        assert!(String::from_utf8(document.render(Format::Xml)).unwrap().contains("<lat>30.274100</lat>"));
        assert_eq!(String::from_utf8(document.render(Format::Json)).unwrap(), r#"{"lat":30.2741}"#);
        assert_eq!(Format::split("services.xml"), Some(("services", Format::Xml)));
        assert_eq!(Format::split("0101.json"), Some(("0101", Format::Json)));
        assert_eq!(Format::split("services.html"), None);
    }
}
