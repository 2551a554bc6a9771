//! Reports: what was invoiced and how many orders started, month by month.

use actix_web::HttpResponse;
use sailfish::TemplateSimple;
use time::Date;

use crate::format;
use crate::web::{AppError, CustomerScope, Section, Shell, html};

pub struct Bar {
    pub label: String,
    pub value: String,
    pub width: &'static str,
}

pub struct Chart {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// `Nov 2026`.
pub fn month_label(d: Date) -> String {
    format!("{} {}", d.month().to_string().chars().take(3).collect::<String>(), d.year())
}

/// One bar per month, zeros included, scaled to the largest month.
pub fn bars(months: &[Date], values: &[(Date, i64)], show: impl Fn(i64) -> String) -> Vec<Bar> {
    let value = |m: &Date| values.iter().filter(|(d, _)| d == m).map(|(_, v)| *v).sum::<i64>();
    let max = months.iter().map(value).max().unwrap_or(0);
    months
        .iter()
        .map(|m| {
            let v = value(m);
            Bar { label: month_label(*m), value: show(v), width: format::width_class(v, max) }
        })
        .collect()
}

#[derive(TemplateSimple)]
#[template(path = "reports/index.stpl")]
struct IndexPage {
    shell: Shell,
    charts: Vec<Chart>,
}

pub async fn index(cx: CustomerScope) -> Result<HttpResponse, AppError> {
    let customer = cx.customer.id;
    let months: Vec<Date> = cx
        .db
        .query(
            "SELECT generate_series(date_trunc('month', current_date::timestamp) - interval '11 months', \
             date_trunc('month', current_date::timestamp), interval '1 month')::date AS month",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get("month"))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let since = months.first().copied();
    // Grouped by currency as well: amounts in different currencies are never added up.
    let invoiced = cx
        .db
        .query(
            "SELECT currency, date_trunc('month', issued_on::timestamp)::date AS month, sum(total_cents)::bigint AS total \
             FROM invoices WHERE customer_id = $1 AND status NOT IN ('draft', 'void') AND issued_on >= $2 \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&customer, &since],
        )
        .await?;
    let started: Vec<(Date, i64)> = cx
        .db
        .query(
            "SELECT date_trunc('month', created_at)::date AS month, count(*) AS n FROM orders \
             WHERE customer_id = $1 AND created_at >= $2::date GROUP BY 1",
            &[&customer, &since],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get("month")?, r.try_get("n")?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let history = cx
        .db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM invoices WHERE customer_id = $1 AND status <> 'draft') \
             OR EXISTS (SELECT 1 FROM orders WHERE customer_id = $1) AS anything, \
             (SELECT min(currency) FROM invoices WHERE customer_id = $1 AND status <> 'draft') AS currency",
            &[&customer],
        )
        .await?;
    cx.db.commit().await?;
    let anything: bool = history.try_get("anything")?;

    let mut charts = Vec::new();
    if anything {
        let mut currencies: Vec<String> =
            invoiced.iter().map(|r| r.try_get("currency")).collect::<Result<_, tokio_postgres::Error>>()?;
        currencies.dedup();
        if currencies.is_empty() {
            // A quiet year still reads in the customer's own currency.
            currencies.push(history.try_get::<_, Option<String>>("currency")?.unwrap_or_else(|| "EUR".to_owned()));
        }
        let several = currencies.len() > 1;
        for currency in currencies {
            let mut values: Vec<(Date, i64)> = Vec::new();
            for r in &invoiced {
                if r.try_get::<_, &str>("currency")? == currency {
                    values.push((r.try_get("month")?, r.try_get("total")?));
                }
            }
            charts.push(Chart {
                title: if several {
                    format!("Invoiced per month ({currency})")
                } else {
                    "Invoiced per month".to_owned()
                },
                bars: bars(&months, &values, |cents| format::money(cents, &currency)),
            });
        }
        charts.push(Chart {
            title: "Orders started per month".to_owned(),
            bars: bars(&months, &started, |n| if n == 1 { "1 order".to_owned() } else { format!("{n} orders") }),
        });
    }
    html(IndexPage { shell: Shell::page(&cx.viewer, "Reports", Section::Reports, cx.flash), charts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn empty_months_still_get_a_bar() {
        let months = [date!(2026 - 09 - 01), date!(2026 - 10 - 01), date!(2026 - 11 - 01)];
        let values = [(date!(2026 - 09 - 01), 4), (date!(2026 - 11 - 01), 8), (date!(2026 - 11 - 01), 2)];
        let bars = bars(&months, &values, |n| n.to_string());
        assert_eq!(bars.len(), 3);
        assert_eq!((bars[0].label.as_str(), bars[0].value.as_str(), bars[0].width), ("Sep 2026", "4", "w-40"));
        assert_eq!((bars[1].value.as_str(), bars[1].width), ("0", "w-0"));
        assert_eq!((bars[2].value.as_str(), bars[2].width), ("10", "w-100"));
    }

    #[test]
    fn a_year_of_nothing_draws_no_bars() {
        let bars = bars(&[date!(2026 - 11 - 01)], &[], |n| n.to_string());
        assert_eq!((bars[0].value.as_str(), bars[0].width), ("0", "w-0"));
    }
}
