//! `pinpipe query`: the analytics questions of docs/analytics.md as SQL over the lake's Delta tables, with
//! DataFusion (through deltalake's `datafusion` feature, which only this crate enables: the
//! Lambda binaries carry no query engine).
//!
//! Every question reads the *unique* views, never the raw tables: `unique_pin`, `unique_geo` and
//! `unique_user` hold each distinct row of their table over its clean (business) columns, the
//! lineage columns `_source`, `_position` and `_ingested_at` and the rescued fields `_rescued`
//! left out, so a post that arrived twice is counted once. Tables are joined on `ind` (inner
//! joins: a post counts where all the tables a question needs have it). Rules shared by all
//! questions:
//!
//! - "Most popular" keeps ties: `RANK()`, never `ROW_NUMBER()`. Ties are listed in name order.
//! - Null never wins: a row whose country, category, poster name or follower count is null does
//!   not take part in a question that groups, ranks or measures that column.
//! - The median is the original's `percentile_approx(x, 0.5)`, computed exactly: the smallest
//!   value v such that at least half of the values are ≤ v, i.e. the ⌈n/2⌉-th smallest
//!   (the lower median for an even count).
//! - Age groups are `18-24`, `25-35`, `36-50` and `+50` (51 and over), from the `age_groups` view;
//!   a user younger than 18 or of unknown age is in none.
//! - Years are UTC calendar years: of `geo.timestamp` for question 2 (2018–2022), of
//!   `user.date_joined` for questions 6–8 (2015–2020, named `post_year` as in the original).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use deltalake::arrow::array::{Array, ArrayRef, Float64Array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::arrow::util::pretty::pretty_format_batches_with_schema;
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::create_session;
use pinpipe::Table;
use pinpipe::lake::Lake;
use pinpipe::redrive::redrives_schema;
use pinpipe::schema::{quarantine_schema, table_schema};
use pinpipe::table::{QUARANTINE_TABLE, REDRIVES_TABLE};
use serde_json::{Value, json};

/// One analytics query: a question of docs/analytics.md (question 3 has two parts, `3` and `3b`).
#[derive(Debug, Clone, Copy)]
pub struct Question {
    /// The question of docs/analytics.md it answers, 1–8.
    pub number: u8,
    /// `"1"` .. `"8"`, and `"3b"` for the second part of question 3.
    pub id: &'static str,
    pub title: &'static str,
    pub sql: &'static str,
}

/// The age groups the questions bucket users into.
const AGE_GROUPS_VIEW: &str = "SELECT column1 AS age_group, CAST(column2 AS BIGINT) AS min_age, \
     CAST(column3 AS BIGINT) AS max_age \
     FROM (VALUES ('18-24', 18, 24), ('25-35', 25, 35), ('36-50', 36, 50), ('+50', 51, NULL))";

/// The views every question reads: `unique_<table>`, the distinct rows of each table over its
/// clean columns (taken from the table's own column list, lineage left out), and `age_groups`.
/// Created in every session, so `--sql` can use them too.
fn views() -> Vec<(String, String)> {
    let mut views: Vec<(String, String)> = Table::ALL
        .iter()
        .map(|table| {
            // Quoted: `timestamp` and `user` are SQL keywords.
            let columns: Vec<String> = table.columns().iter().map(|c| format!("\"{}\"", c.name)).collect();
            (format!("unique_{table}"), format!("SELECT DISTINCT {} FROM \"{table}\"", columns.join(", ")))
        })
        .collect();
    views.push(("age_groups".to_string(), AGE_GROUPS_VIEW.to_string()));
    views
}

/// The questions, in order. Each SQL text stands alone over the views above.
pub const QUESTIONS: &[Question] = &[
    Question {
        number: 1,
        id: "1",
        title: "Most popular category in each country",
        sql: r#"
WITH counts AS (
    SELECT g.country, p.category, COUNT(*) AS category_count
    FROM unique_pin p JOIN unique_geo g ON p.ind = g.ind
    WHERE g.country IS NOT NULL AND p.category IS NOT NULL
    GROUP BY g.country, p.category
), ranked AS (
    SELECT country, category, category_count,
           RANK() OVER (PARTITION BY country ORDER BY category_count DESC) AS position
    FROM counts
)
SELECT country, category, category_count FROM ranked WHERE position = 1
ORDER BY country, category"#,
    },
    Question {
        number: 2,
        id: "2",
        title: "Most popular category each year, 2018-2022",
        sql: r#"
WITH counts AS (
    SELECT CAST(date_part('year', g."timestamp") AS BIGINT) AS post_year, p.category, COUNT(*) AS category_count
    FROM unique_pin p JOIN unique_geo g ON p.ind = g.ind
    WHERE p.category IS NOT NULL
      AND date_part('year', g."timestamp") BETWEEN 2018 AND 2022
    GROUP BY 1, 2
), ranked AS (
    SELECT post_year, category, category_count,
           RANK() OVER (PARTITION BY post_year ORDER BY category_count DESC) AS position
    FROM counts
)
SELECT post_year, category, category_count FROM ranked WHERE position = 1
ORDER BY post_year, category"#,
    },
    Question {
        number: 3,
        id: "3",
        title: "The user with the most followers in each country",
        sql: r#"
WITH users AS (
    SELECT g.country, p.poster_name, MAX(p.follower_count) AS follower_count
    FROM unique_pin p JOIN unique_geo g ON p.ind = g.ind
    WHERE g.country IS NOT NULL AND p.poster_name IS NOT NULL AND p.follower_count IS NOT NULL
    GROUP BY g.country, p.poster_name
), ranked AS (
    SELECT country, poster_name, follower_count,
           RANK() OVER (PARTITION BY country ORDER BY follower_count DESC) AS position
    FROM users
)
SELECT country, poster_name, follower_count FROM ranked WHERE position = 1
ORDER BY country, poster_name"#,
    },
    Question {
        number: 3,
        id: "3b",
        title: "The country whose top user has the most followers",
        sql: r#"
WITH top AS (
    SELECT g.country, MAX(p.follower_count) AS follower_count
    FROM unique_pin p JOIN unique_geo g ON p.ind = g.ind
    WHERE g.country IS NOT NULL AND p.poster_name IS NOT NULL AND p.follower_count IS NOT NULL
    GROUP BY g.country
), ranked AS (
    SELECT country, follower_count, RANK() OVER (ORDER BY follower_count DESC) AS position FROM top
)
SELECT country, follower_count FROM ranked WHERE position = 1
ORDER BY country"#,
    },
    Question {
        number: 4,
        id: "4",
        title: "Most popular category per age group",
        sql: r#"
WITH counts AS (
    SELECT a.age_group, MIN(a.min_age) AS min_age, p.category, COUNT(*) AS category_count
    FROM unique_pin p
    JOIN unique_user u ON p.ind = u.ind
    JOIN age_groups a ON u.age >= a.min_age AND (a.max_age IS NULL OR u.age <= a.max_age)
    WHERE p.category IS NOT NULL
    GROUP BY a.age_group, p.category
), ranked AS (
    SELECT age_group, min_age, category, category_count,
           RANK() OVER (PARTITION BY age_group ORDER BY category_count DESC) AS position
    FROM counts
)
SELECT age_group, category, category_count FROM ranked WHERE position = 1
ORDER BY min_age, category"#,
    },
    Question {
        number: 5,
        id: "5",
        title: "Median follower count per age group",
        sql: r#"
WITH v AS (
    SELECT a.age_group, a.min_age, p.follower_count
    FROM unique_pin p
    JOIN unique_user u ON p.ind = u.ind
    JOIN age_groups a ON u.age >= a.min_age AND (a.max_age IS NULL OR u.age <= a.max_age)
    WHERE p.follower_count IS NOT NULL
), ordered AS (
    SELECT age_group, min_age, follower_count,
           ROW_NUMBER() OVER (PARTITION BY age_group ORDER BY follower_count) AS k,
           COUNT(*) OVER (PARTITION BY age_group) AS n
    FROM v
)
SELECT age_group, follower_count AS median_follower_count FROM ordered WHERE k = (n + 1) / 2
ORDER BY min_age"#,
    },
    Question {
        number: 6,
        id: "6",
        title: "Users joined each year, 2015-2020",
        sql: r#"
SELECT CAST(date_part('year', date_joined) AS BIGINT) AS post_year, COUNT(*) AS number_users_joined
FROM unique_user
WHERE date_part('year', date_joined) BETWEEN 2015 AND 2020
GROUP BY 1
ORDER BY post_year"#,
    },
    Question {
        number: 7,
        id: "7",
        title: "Median follower count of users by joining year, 2015-2020",
        sql: r#"
WITH v AS (
    SELECT CAST(date_part('year', u.date_joined) AS BIGINT) AS post_year, p.follower_count
    FROM unique_pin p JOIN unique_user u ON p.ind = u.ind
    WHERE p.follower_count IS NOT NULL
      AND date_part('year', u.date_joined) BETWEEN 2015 AND 2020
), ordered AS (
    SELECT post_year, follower_count,
           ROW_NUMBER() OVER (PARTITION BY post_year ORDER BY follower_count) AS k,
           COUNT(*) OVER (PARTITION BY post_year) AS n
    FROM v
)
SELECT post_year, follower_count AS median_follower_count FROM ordered WHERE k = (n + 1) / 2
ORDER BY post_year"#,
    },
    Question {
        number: 8,
        id: "8",
        title: "Median follower count by joining year and age group, 2015-2020",
        sql: r#"
WITH v AS (
    SELECT a.age_group, a.min_age, CAST(date_part('year', u.date_joined) AS BIGINT) AS post_year, p.follower_count
    FROM unique_pin p
    JOIN unique_user u ON p.ind = u.ind
    JOIN age_groups a ON u.age >= a.min_age AND (a.max_age IS NULL OR u.age <= a.max_age)
    WHERE p.follower_count IS NOT NULL
      AND date_part('year', u.date_joined) BETWEEN 2015 AND 2020
), ordered AS (
    SELECT age_group, min_age, post_year, follower_count,
           ROW_NUMBER() OVER (PARTITION BY age_group, post_year ORDER BY follower_count) AS k,
           COUNT(*) OVER (PARTITION BY age_group, post_year) AS n
    FROM v
)
SELECT age_group, post_year, follower_count AS median_follower_count FROM ordered WHERE k = (n + 1) / 2
ORDER BY min_age, post_year"#,
    },
];

/// How answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables, each under its title.
    #[default]
    Table,
    /// CSV with a header; several answers are separated by a blank line and a `# title` line.
    Csv,
    /// One JSON object per answer and line: `{"question", "title", "columns", "rows": [{...}]}`.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The lake root: a local directory or `s3://bucket/prefix` (credentials and endpoint from
    /// the usual `AWS_*` variables, e.g. `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
    #[arg(long, default_value = "lake")]
    pub lake: String,
    /// Only this question of docs/analytics.md (1-8).
    #[arg(long, short = 'q', value_parser = clap::value_parser!(u8).range(1..=8), conflicts_with = "sql")]
    pub question: Option<u8>,
    /// Run this SQL instead, over the tables `pin`, `geo`, `user`, `quarantine` and
    /// `quarantine_redrives` (empty where the lake has none yet) and the views `unique_pin`, `unique_geo`, `unique_user`, `age_groups`. Quote `"user"`
    /// where SQL would read it as the USER function.
    #[arg(long)]
    pub sql: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write one SVG bar chart per answer into this directory.
    #[arg(long, value_name = "DIR")]
    pub chart: Option<PathBuf>,
}

/// The result of one query.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub title: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Answer {
    /// All rows as one batch.
    pub fn batch(&self) -> anyhow::Result<RecordBatch> {
        Ok(deltalake::arrow::compute::concat_batches(&self.schema, &self.batches)?)
    }
}

/// A lake from a `--lake` argument: URIs as they are, local directories made absolute (and
/// required to exist).
pub fn lake_from_arg(root: &str) -> anyhow::Result<Lake> {
    if root.contains("://") {
        return Ok(Lake::new(root));
    }
    let dir = std::fs::canonicalize(root).with_context(|| format!("no lake at {root}"))?;
    Ok(Lake::new(dir.to_str().context("the lake path is not UTF-8")?))
}

/// A DataFusion session over the lake: the tables `pin`, `geo`, `user`, `quarantine` and
/// `quarantine_redrives` (empty, with their schemas, where the lake has none yet), and the views.
pub async fn session(lake: &Lake) -> anyhow::Result<SessionContext> {
    let ctx = create_session().into_inner();
    let names = Table::ALL
        .iter()
        .map(|t| (t.name(), table_schema(*t)))
        .chain([(QUARANTINE_TABLE, quarantine_schema()), (REDRIVES_TABLE, redrives_schema())]);
    for (name, empty_schema) in names {
        match lake.open(name).await? {
            Some(table) => {
                table.update_datafusion_session(&ctx.state())?;
                let provider = table.table_provider().await.with_context(|| format!("reading the {name} table"))?;
                ctx.register_table(name, provider)?;
            }
            None => {
                ctx.register_table(name, Arc::new(MemTable::try_new(empty_schema, vec![vec![]])?))?;
            }
        }
    }
    for (name, sql) in views() {
        ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await?.collect().await?;
    }
    Ok(ctx)
}

/// Runs one SQL text in the session.
pub async fn run_sql(ctx: &SessionContext, id: &str, title: &str, sql: &str) -> anyhow::Result<Answer> {
    let what = if title.is_empty() { "the query" } else { title };
    let frame = ctx.sql(sql).await.with_context(|| format!("planning {what}"))?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.with_context(|| format!("running {what}"))?;
    Ok(Answer { id: id.to_string(), title: title.to_string(), schema, batches })
}

/// The answers to the analytics questions, all of them or those of one question.
pub async fn answers(ctx: &SessionContext, question: Option<u8>) -> anyhow::Result<Vec<Answer>> {
    let mut answers = Vec::new();
    for q in QUESTIONS.iter().filter(|q| question.is_none_or(|n| n == q.number)) {
        answers.push(run_sql(ctx, q.id, &format!("{}. {}", q.id, q.title), q.sql).await?);
    }
    Ok(answers)
}

/// Writes answers in `format`.
pub fn write_answers(answers: &[Answer], format: Format, out: &mut impl Write) -> anyhow::Result<()> {
    let titled = answers.len() > 1;
    for (i, answer) in answers.iter().enumerate() {
        match format {
            Format::Table => {
                if i > 0 {
                    writeln!(out)?;
                }
                if !answer.title.is_empty() {
                    writeln!(out, "{}", answer.title)?;
                }
                writeln!(out, "{}", pretty_format_batches_with_schema(answer.schema.clone(), &answer.batches)?)?;
            }
            Format::Csv => {
                if titled {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    writeln!(out, "# {}", answer.title)?;
                }
                let mut writer = deltalake::arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
                writer.write(&answer.batch()?)?;
            }
            Format::Json => {
                let line = json!({
                    "question": answer.id,
                    "title": answer.title,
                    "columns": answer.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
                    "rows": rows_as_json(answer)?,
                });
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

fn rows_as_json(answer: &Answer) -> anyhow::Result<Value> {
    let mut buf = Vec::new();
    {
        let mut writer = deltalake::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, deltalake::arrow::json::writer::JsonArray>(&mut buf);
        writer.write(&answer.batch()?)?;
        writer.finish()?;
    }
    if buf.is_empty() {
        return Ok(Value::Array(vec![]));
    }
    Ok(serde_json::from_slice(&buf)?)
}

/// Every answer to the analytics questions over the lake, rendered in `format` (for the demo's summary).
pub async fn render_all(lake: &Lake, format: Format) -> anyhow::Result<String> {
    let ctx = session(lake).await?;
    let answers = answers(&ctx, None).await?;
    let mut out = Vec::new();
    write_answers(&answers, format, &mut out)?;
    Ok(String::from_utf8(out)?)
}

/// `pinpipe query`.
pub async fn run(args: &QueryArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let lake = lake_from_arg(&args.lake)?;
    let ctx = session(&lake).await?;
    let answers = match &args.sql {
        Some(sql) => vec![run_sql(&ctx, "sql", "", sql).await?],
        None => answers(&ctx, args.question).await?,
    };
    let mut stdout = std::io::stdout().lock();
    write_answers(&answers, args.format, &mut stdout)?;
    stdout.flush()?;
    if let Some(dir) = &args.chart {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for answer in &answers {
            match write_chart(answer, dir) {
                Ok(path) => eprintln!("chart: {}", path.display()),
                // An ad-hoc query may have nothing to draw; the questions always do.
                Err(e) if args.sql.is_some() => eprintln!("no chart: {e:#}"),
                Err(e) => return Err(e),
            }
        }
    }
    if args.format == Format::Table {
        let queries = if answers.len() == 1 { "query" } else { "queries" };
        eprintln!("({} {queries} in {:.2} s)", answers.len(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Charts

/// At most this many bars per chart; the rest are named in a note.
const MAX_BARS: usize = 60;

/// A horizontal bar chart of an answer: one bar per row, labelled with the row's other columns,
/// as long as the answer's last column. Written to `dir/q<id>.svg`; returns the path.
pub fn write_chart(answer: &Answer, dir: &Path) -> anyhow::Result<PathBuf> {
    let slug: String = answer.id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let path = dir.join(format!("q{slug}.svg"));
    std::fs::write(&path, chart_svg(answer)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The bars of an answer: (label, value) per row, in row order.
fn bars(answer: &Answer) -> anyhow::Result<(Vec<(String, f64)>, String, String)> {
    let batch = answer.batch()?;
    let columns = batch.num_columns();
    if columns == 0 {
        bail!("{} has no columns to chart", answer.title);
    }
    let value_index = columns - 1;
    let values: ArrayRef = cast(batch.column(value_index), &DataType::Float64)
        .with_context(|| format!("{}: its last column is not a number to chart", answer.title))?;
    let values = values.as_any().downcast_ref::<Float64Array>().context("a Float64 array")?;
    let options = FormatOptions::default().with_null("null");
    let formatters = batch.columns()[..value_index]
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut bars = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let label = formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join(" · ");
        let value = if values.is_valid(row) { values.value(row) } else { 0.0 };
        bars.push((label, value));
    }
    let schema = batch.schema();
    let label_name = schema.fields()[..value_index].iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(" · ");
    Ok((bars, label_name, schema.field(value_index).name().clone()))
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        // Thousands separated, as people read follower counts.
        let digits = format!("{}", v.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else {
        format!("{v:.2}")
    }
}

/// A "nice" axis step (1, 2 or 5 × 10^k) giving about `ticks` intervals up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The SVG text of an answer's bar chart.
pub fn chart_svg(answer: &Answer) -> anyhow::Result<String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let (all_bars, label_name, value_name) = bars(answer)?;
    let shown = &all_bars[..all_bars.len().min(MAX_BARS)];
    let longest_label = shown.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0).max(label_name.len());
    let label_width = (longest_label as u32 * 8 + 24).clamp(80, 460);
    let bar_height = 22u32;
    let top = 78u32;
    let bottom = 44u32;
    let plot_width = 560u32;
    let value_width = 110u32;
    let width = label_width + plot_width + value_width;
    let height = top + bottom + bar_height * (shown.len().max(1) as u32);
    let max = shown.iter().map(|(_, v)| *v).fold(0.0f64, f64::max);
    let step = nice_step(if max > 0.0 { max } else { 1.0 }, 5.0);
    let axis_max = (max / step).ceil().max(1.0) * step;
    let x_of = |v: f64| label_width as i32 + ((v.max(0.0) / axis_max) * plot_width as f64).round() as i32;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let draw_error = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the chart: {e:?}");
        root.fill(&WHITE).map_err(draw_error)?;
        let ink = RGBColor(0x33, 0x33, 0x33);
        let grey = RGBColor(0x88, 0x88, 0x88);
        let grid = RGBColor(0xe4, 0xe4, 0xe4);
        let bar_colour = RGBColor(0xe6, 0x00, 0x23); // Pinterest red
        let title_style = TextStyle::from(("sans-serif", 24, FontStyle::Bold)).color(&ink);
        let title = if answer.title.is_empty() { "pinpipe query --sql" } else { answer.title.as_str() };
        root.draw(&Text::new(title, (16, 14), title_style)).map_err(draw_error)?;
        let subtitle = if shown.len() < all_bars.len() {
            format!("{value_name} by {label_name}; the first {} of {} rows", shown.len(), all_bars.len())
        } else {
            format!("{value_name} by {label_name}")
        };
        let small = TextStyle::from(("sans-serif", 16)).color(&grey);
        root.draw(&Text::new(subtitle, (16, 42), small.clone())).map_err(draw_error)?;

        // Vertical grid lines with their values, above and below the bars.
        let plot_bottom = (top + bar_height * shown.len().max(1) as u32) as i32;
        let mut tick = 0.0;
        while tick <= axis_max + step / 2.0 {
            let x = x_of(tick);
            root.draw(&PathElement::new(vec![(x, top as i32 - 6), (x, plot_bottom)], grid.stroke_width(1)))
                .map_err(draw_error)?;
            let centred = small.pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(format_value(tick), (x, plot_bottom + 6), centred)).map_err(draw_error)?;
            tick += step;
        }

        if shown.is_empty() {
            let note = TextStyle::from(("sans-serif", 17)).color(&grey).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new("no rows", (label_width as i32 + 8, (top + bar_height / 2) as i32), note))
                .map_err(draw_error)?;
        }
        let label_style = TextStyle::from(("sans-serif", 17)).color(&ink).pos(Pos::new(HPos::Right, VPos::Center));
        let value_style = TextStyle::from(("sans-serif", 17)).color(&ink).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (label, value)) in shown.iter().enumerate() {
            let y0 = (top + bar_height * i as u32) as i32;
            let middle = y0 + bar_height as i32 / 2;
            root.draw(&Text::new(label.clone(), (label_width as i32 - 10, middle), label_style.clone()))
                .map_err(draw_error)?;
            let x1 = x_of(*value).max(label_width as i32 + 1);
            root.draw(&Rectangle::new(
                [(label_width as i32, y0 + 3), (x1, y0 + bar_height as i32 - 3)],
                bar_colour.filled(),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(format_value(*value), (x1 + 6, middle), value_style.clone())).map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(1_000_000.0, 5.0), 200_000.0);
        assert_eq!(nice_step(3.0, 5.0), 1.0);
    }

    #[test]
    fn values_read_like_numbers() {
        assert_eq!(format_value(1_234_567.0), "1,234,567");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(2.5), "2.50");
    }

    #[test]
    fn every_question_of_spec_5_has_a_query() {
        let numbers: Vec<u8> = QUESTIONS.iter().map(|q| q.number).collect();
        assert_eq!(numbers, [1, 2, 3, 3, 4, 5, 6, 7, 8]);
        assert!(QUESTIONS.iter().all(|q| !q.sql.contains("ROW_NUMBER") || q.sql.contains("WHERE k = (n + 1) / 2")));
        assert!(QUESTIONS.iter().all(|q| !q.sql.contains("percentile")));
    }
}
