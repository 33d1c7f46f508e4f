//! The ledger's trend as an inline SVG drawn on the server: no charting
//! script to ship, nothing for the Content-Security-Policy to allow, and
//! it prints. Presentation attributes only (no inline style).

use maud::{Markup, html};

use crate::i18n::Lang;

/// One day of the trend.
pub struct Day {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub closure_rate: f64,
    pub on_time_closure_rate: f64,
    pub filed: u64,
    /// Deadlines passed that day.
    pub turned_overdue: u64,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 24.0;

fn x(index: usize, count: usize) -> f64 {
    let span = WIDTH - LEFT - 10.0;
    LEFT + if count <= 1 { span / 2.0 } else { span * index as f64 / (count - 1) as f64 }
}

/// A rate (0..1) on the chart's vertical axis.
fn y(rate: f64) -> f64 {
    let span = HEIGHT - BOTTOM - 10.0;
    10.0 + span * (1.0 - rate.clamp(0.0, 1.0))
}

fn points(days: &[Day], rate: impl Fn(&Day) -> f64) -> String {
    days.iter()
        .enumerate()
        .map(|(i, d)| format!("{:.1},{:.1}", x(i, days.len()), y(rate(d))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A count on the lower half of the chart, `most` at its middle.
fn y_count(count: u64, most: f64) -> f64 {
    HEIGHT - BOTTOM - (HEIGHT - BOTTOM - 10.0) * count as f64 / most * 0.5
}

/// Closure rate and on-time closure rate per day; filings as bars and
/// deadlines passed as a red line, on one count scale.
pub fn trend(lang: Lang, days: &[Day]) -> Markup {
    let most_filed = days.iter().map(|d| d.filed.max(d.turned_overdue)).max().unwrap_or(0).max(1) as f64;
    let overdue_points = days
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{:.1},{:.1}", x(i, days.len()), y_count(d.turned_overdue, most_filed)))
        .collect::<Vec<_>>()
        .join(" ");
    let bar = (WIDTH - LEFT - 10.0) / days.len().max(1) as f64 * 0.6;
    html! {
        figure.trend {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(lang.t("trend")) {
                @for rate in [0.0, 0.5, 1.0] {
                    line x1=(LEFT) x2=(WIDTH - 10.0) y1=(y(rate)) y2=(y(rate)) stroke="#d9dee5" {}
                    text x="2" y=(y(rate) + 4.0) font-size="11" fill="#5f6b7a" { (format!("{:.0}%", rate * 100.0)) }
                }
                @for (i, d) in days.iter().enumerate() {
                    @let height = HEIGHT - BOTTOM - y_count(d.filed, most_filed);
                    rect.filed x=(format!("{:.1}", x(i, days.len()) - bar / 2.0)) y=(format!("{:.1}", HEIGHT - BOTTOM - height))
                        width=(format!("{bar:.1}")) height=(format!("{height:.1}")) fill="#cfd8e3" {
                        title { (d.day) ": " (d.filed) " " (lang.t("filed")) }
                    }
                }
                polyline.closure points=(points(days, |d| d.closure_rate)) fill="none" stroke="#0d3b66" stroke-width="2" {}
                polyline.on-time points=(points(days, |d| d.on_time_closure_rate)) fill="none" stroke="#2e7d32" stroke-width="2" {}
                polyline.overdue points=(overdue_points) fill="none" stroke="#c62828" stroke-width="2" stroke-dasharray="4 3" {}
                @for (i, d) in days.iter().enumerate().filter(|(_, d)| d.turned_overdue > 0) {
                    circle cx=(format!("{:.1}", x(i, days.len()))) cy=(format!("{:.1}", y_count(d.turned_overdue, most_filed))) r="3" fill="#c62828" {
                        title { (d.day) ": " (d.turned_overdue) " " (lang.t("turned_overdue")) }
                    }
                }
                @if let (Some(first), Some(last)) = (days.first(), days.last()) {
                    text x=(LEFT) y=(HEIGHT - 6.0) font-size="11" fill="#5f6b7a" { (first.day) }
                    text x=(WIDTH - 10.0) y=(HEIGHT - 6.0) font-size="11" fill="#5f6b7a" text-anchor="end" { (last.day) }
                }
            }
            figcaption {
                span.key.closure { (lang.t("closure_rate")) } " · "
                span.key.on-time { (lang.t("on_time_closure_rate")) } " · "
                span.key.filed { (lang.t("filed")) } " · "
                span.key.overdue { (lang.t("turned_overdue")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_map_onto_the_axis_and_days_across_it() {
        assert_eq!(y(1.0), 10.0);
        assert_eq!(y(0.0), HEIGHT - BOTTOM);
        assert_eq!(y(7.0), y(1.0), "a rate above 100% stays on the chart");
        assert_eq!(x(0, 30), LEFT);
        assert_eq!(x(29, 30), WIDTH - 10.0);
        assert_eq!(y_count(0, 8.0), HEIGHT - BOTTOM);
        assert_eq!(y_count(8, 8.0), HEIGHT - BOTTOM - (HEIGHT - BOTTOM - 10.0) / 2.0, "the most reaches half way");
    }
}
