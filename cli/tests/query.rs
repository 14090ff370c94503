//! `pinpipe query` over a tiny hand-made lake whose answers were worked out by hand (below, next
//! to each expectation). The posts are cleaned by the pipeline's own code and written as Delta
//! tables with lineage, and one post arrives twice (a second commit, other lineage).
//!
//! | ind | category  | poster | followers | country | geo timestamp       | age | joined              |
//! |-----|-----------|--------|-----------|---------|---------------------|-----|---------------------|
//! | 1   | travel    | Ann    | 40        | Albania | 2018-01-01 00:00:00 | 18  | 2015-01-01 00:00:00 |
//! | 2   | travel    | Bob    | 20        | Albania | 2018-06-01 12:00:00 | 24  | 2015-06-01 00:00:00 |
//! | 3   | art       | Cy     | 30        | Albania | 2019-01-01 00:00:00 | 24  | 2016-01-01 00:00:00 |
//! | 4   | art       | Dee    | 40        | Albania | 2022-12-31 23:59:59 | 20  | 2020-12-31 23:59:59 |
//! | 5   | beauty    | Eve    | null      | Albania | 2017-12-31 23:59:59 | 22  | 2014-12-31 23:59:59 |
//! | 6   | education | Fay    | 1000      | Chad    | 2023-01-01 00:00:00 | 25  | 2021-01-01 00:00:00 |
//! | 7   | education | Gus    | 2k        | Chad    | 2020-05-05 00:00:00 | 35  | 2015-03-03 00:00:00 |
//! | 8×2 | quotes    | Hal    | 3000      | Chad    | 2020-06-06 00:00:00 | 36  | 2016-04-04 00:00:00 |
//! | 9   | null      | Ivy    | 50        | Chad    | 2021-01-01 00:00:00 | 50  | 2017-01-01 00:00:00 |
//! | 10  | null      | Jo     | 60        | Chad    | 2021-02-01 00:00:00 | 51  | 2017-02-01 00:00:00 |
//! | 11  | vehicles  | Kim    | 70        | Chad    | 2021-03-01 00:00:00 | 70  | 2018-01-01 00:00:00 |
//! | 12  | travel    | Lu     | 1M        | null    | 2020-01-01 00:00:00 | 17  | 2019-01-01 00:00:00 |
//! | 13  | tattoos   | Max    | 5         | Chad    | 2021-04-01 00:00:00 | null| null                |
//! | 14  | null      | null   | 999999    | Albania | 2019-05-05 00:00:00 | 30  | 2019-05-05 00:00:00 |
//!
//! The pin of post 14 also carries a field no rule reads, `new_field`, kept in `_rescued`.

use std::process::Command;

use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use pinpipe::Table;
use pinpipe::clean::clean_bytes;
use pinpipe::lake::Lake;
use pinpipe::schema::{Origin, table_batch, table_schema};
use serde_json::{Value, json};

struct Post {
    ind: i64,
    category: &'static str,
    poster: &'static str,
    followers: &'static str,
    country: Option<&'static str>,
    timestamp: &'static str,
    age: Option<i64>,
    joined: Option<&'static str>,
}

const fn post(
    ind: i64,
    category: &'static str,
    poster: &'static str,
    followers: &'static str,
    country: Option<&'static str>,
    timestamp: &'static str,
    age: Option<i64>,
    joined: Option<&'static str>,
) -> Post {
    Post { ind, category, poster, followers, country, timestamp, age, joined }
}

#[rustfmt::skip]
const POSTS: &[Post] = &[
    post(1, "travel", "Ann", "40", Some("Albania"), "2018-01-01 00:00:00", Some(18), Some("2015-01-01 00:00:00")),
    post(2, "travel", "Bob", "20", Some("Albania"), "2018-06-01 12:00:00", Some(24), Some("2015-06-01 00:00:00")),
    post(3, "art", "Cy", "30", Some("Albania"), "2019-01-01 00:00:00", Some(24), Some("2016-01-01 00:00:00")),
    post(4, "art", "Dee", "40", Some("Albania"), "2022-12-31 23:59:59", Some(20), Some("2020-12-31T23:59:59")),
    post(5, "beauty", "Eve", "User Info Error", Some("Albania"), "2017-12-31 23:59:59", Some(22), Some("2014-12-31 23:59:59")),
    post(6, "education", "Fay", "1000", Some("Chad"), "2023-01-01 00:00:00", Some(25), Some("2021-01-01 00:00:00")),
    post(7, "education", "Gus", "2k", Some("Chad"), "2020-05-05 00:00:00", Some(35), Some("2015-03-03 00:00:00")),
    post(8, "quotes", "Hal", "3000", Some("Chad"), "2020-06-06 00:00:00", Some(36), Some("2016-04-04 00:00:00")),
    post(9, "", "Ivy", "50", Some("Chad"), "2021-01-01 00:00:00", Some(50), Some("2017-01-01 00:00:00")),
    post(10, "", "Jo", "60", Some("Chad"), "2021-02-01 00:00:00", Some(51), Some("2017-02-01 00:00:00")),
    post(11, "vehicles", "Kim", "70", Some("Chad"), "2021-03-01 00:00:00", Some(70), Some("2018-01-01 00:00:00")),
    post(12, "travel", "Lu", "1M", None, "2020-01-01 00:00:00", Some(17), Some("2019-01-01 00:00:00")),
    post(13, "tattoos", "Max", "5", Some("Chad"), "2021-04-01 00:00:00", None, None),
    post(14, "", "User Info Error", "999999", Some("Albania"), "2019-05-05 00:00:00", Some(30), Some("2019-05-05 00:00:00")),
];

fn raw(post: &Post, table: Table) -> Value {
    match table {
        Table::Pin => {
            let mut pin = json!({
                "index": post.ind, "unique_id": format!("uid-{}", post.ind), "title": "A title",
                "category": post.category, "poster_name": post.poster, "follower_count": post.followers,
                "downloaded": 1, "save_location": format!("Local save in /data/{}", post.category),
            });
            if post.ind == 14 {
                pin["new_field"] = json!({"source": "app"});
            }
            pin
        }
        Table::Geo => {
            let mut geo = json!({"ind": post.ind, "timestamp": post.timestamp, "latitude": 1.5, "longitude": -2.25});
            if let Some(country) = post.country {
                geo["country"] = json!(country);
            }
            geo
        }
        Table::User => {
            let mut user = json!({"ind": post.ind.to_string(), "first_name": post.poster, "last_name": "Doe"});
            if let Some(age) = post.age {
                user["age"] = json!(age);
            }
            if let Some(joined) = post.joined {
                user["date_joined"] = json!(joined);
            }
            user
        }
    }
}

/// Appends the posts' records of `table` in one commit, with lineage naming `source`.
async fn append(lake: &Lake, table: Table, posts: &[&Post], source: &str, ingested_at: i64) {
    let rows: Vec<_> = posts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let record = clean_bytes(table, raw(p, table).to_string().as_bytes()).expect("a clean record").into_owned();
            (record, Origin { source: source.to_string(), position: i.to_string() })
        })
        .collect();
    let batch = table_batch(table, &rows, ingested_at).unwrap();
    let mut delta = lake.open_or_create(table.name(), &table_schema(table)).await.unwrap();
    let mut writer = RecordBatchWriter::for_table(&delta).unwrap();
    writer.write(batch).await.unwrap();
    writer.flush_and_commit(&mut delta).await.unwrap();
}

/// Writes the hand-made lake: every post once, then post 8 again.
async fn write_lake(lake: &Lake) {
    let all: Vec<&Post> = POSTS.iter().collect();
    let again: Vec<&Post> = POSTS.iter().filter(|p| p.ind == 8).collect();
    for table in Table::ALL {
        append(lake, table, &all, "kinesis:streaming-t/shardId-000000000000", 1_700_000_000_000_000).await;
        append(lake, table, &again, "s3://raw/topics/t/partition=0/t+0+0000000008.json", 1_700_000_100_000_000).await;
    }
}

fn lake() -> &'static tempfile::TempDir {
    static LAKE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    LAKE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(write_lake(&Lake::new(dir.path().to_str().unwrap())));
        dir
    })
}

fn pinpipe(args: &[&str]) -> String {
    pinpipe_on(lake().path().to_str().unwrap(), args)
}

fn pinpipe_on(lake: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_pinpipe"))
        .args(["query", "--lake", lake])
        .args(args)
        .output()
        .expect("pinpipe runs");
    assert!(output.status.success(), "pinpipe query {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The answers as JSON, by question id.
fn answers() -> &'static std::collections::BTreeMap<String, Value> {
    static ANSWERS: std::sync::OnceLock<std::collections::BTreeMap<String, Value>> = std::sync::OnceLock::new();
    ANSWERS.get_or_init(|| {
        pinpipe(&["--format", "json"])
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("one JSON object per line");
                (v["question"].as_str().unwrap().to_string(), v)
            })
            .collect()
    })
}

fn rows(id: &str) -> Value {
    answers()[id]["rows"].clone()
}

#[test]
fn there_is_an_answer_per_question_with_the_spec_columns() {
    let columns = |id: &str| answers()[id]["columns"].clone();
    assert_eq!(
        answers().keys().map(String::as_str).collect::<Vec<_>>(),
        ["1", "2", "3", "3b", "4", "5", "6", "7", "8"]
    );
    assert_eq!(columns("1"), json!(["country", "category", "category_count"]));
    assert_eq!(columns("2"), json!(["post_year", "category", "category_count"]));
    assert_eq!(columns("3"), json!(["country", "poster_name", "follower_count"]));
    assert_eq!(columns("3b"), json!(["country", "follower_count"]));
    assert_eq!(columns("4"), json!(["age_group", "category", "category_count"]));
    assert_eq!(columns("5"), json!(["age_group", "median_follower_count"]));
    assert_eq!(columns("6"), json!(["post_year", "number_users_joined"]));
    assert_eq!(columns("7"), json!(["post_year", "median_follower_count"]));
    assert_eq!(columns("8"), json!(["age_group", "post_year", "median_follower_count"]));
}

#[test]
fn q1_most_popular_category_per_country_keeps_ties_and_ignores_nulls_and_duplicates() {
    // Albania: travel 2 (1, 2), art 2 (3, 4), beauty 1, null 1 → a tie. Chad: education 2 (6, 7),
    // quotes 1 (post 8 arrived twice: counted twice it would tie), null 2 (9, 10), vehicles 1,
    // tattoos 1. Post 12 has no country.
    assert_eq!(
        rows("1"),
        json!([
            {"country": "Albania", "category": "art", "category_count": 2},
            {"country": "Albania", "category": "travel", "category_count": 2},
            {"country": "Chad", "category": "education", "category_count": 2},
        ])
    );
}

#[test]
fn q2_most_popular_category_per_year_within_2018_to_2022() {
    // 2017 (post 5) and 2023 (post 6) are out; 2022-12-31 23:59:59 (post 4) is in. 2020:
    // education, quotes (once), travel → a three-way tie. 2021: two nulls do not win.
    assert_eq!(
        rows("2"),
        json!([
            {"post_year": 2018, "category": "travel", "category_count": 2},
            {"post_year": 2019, "category": "art", "category_count": 1},
            {"post_year": 2020, "category": "education", "category_count": 1},
            {"post_year": 2020, "category": "quotes", "category_count": 1},
            {"post_year": 2020, "category": "travel", "category_count": 1},
            {"post_year": 2021, "category": "tattoos", "category_count": 1},
            {"post_year": 2021, "category": "vehicles", "category_count": 1},
            {"post_year": 2022, "category": "art", "category_count": 1},
        ])
    );
}

#[test]
fn q3_top_user_per_country_keeps_ties_and_needs_a_named_user() {
    // Albania: Ann 40 and Dee 40 tie; post 14's 999999 has no poster name. Chad: Hal 3000.
    // Post 12 (1M followers) has no country.
    assert_eq!(
        rows("3"),
        json!([
            {"country": "Albania", "poster_name": "Ann", "follower_count": 40},
            {"country": "Albania", "poster_name": "Dee", "follower_count": 40},
            {"country": "Chad", "poster_name": "Hal", "follower_count": 3000},
        ])
    );
    assert_eq!(rows("3b"), json!([{"country": "Chad", "follower_count": 3000}]));
}

#[test]
fn q4_most_popular_category_per_age_group_with_the_edges() {
    // 18-24: 1 (18), 2 (24), 3 (24), 4 (20), 5 (22): travel 2, art 2, beauty 1. 25-35: 6 (25),
    // 7 (35), 14 (30, null category): education 2. 36-50: 8 (36), 9 (50, null): quotes 1.
    // +50: 10 (51, null), 11 (70): vehicles 1. Post 12 (17) and 13 (no age) are in no group.
    assert_eq!(
        rows("4"),
        json!([
            {"age_group": "18-24", "category": "art", "category_count": 2},
            {"age_group": "18-24", "category": "travel", "category_count": 2},
            {"age_group": "25-35", "category": "education", "category_count": 2},
            {"age_group": "36-50", "category": "quotes", "category_count": 1},
            {"age_group": "+50", "category": "vehicles", "category_count": 1},
        ])
    );
}

#[test]
fn q5_median_follower_count_per_age_group_is_the_lower_median() {
    // 18-24: [20, 30, 40, 40] (5's is null) → 30 (percentile_cont would say 35).
    // 25-35: [1000, 2000, 999999] → 2000. 36-50: [50, 3000] → 50 (post 8 twice would make it 3000;
    // 50 in +50 would too). +50: [60, 70] → 60.
    assert_eq!(
        rows("5"),
        json!([
            {"age_group": "18-24", "median_follower_count": 30},
            {"age_group": "25-35", "median_follower_count": 2000},
            {"age_group": "36-50", "median_follower_count": 50},
            {"age_group": "+50", "median_follower_count": 60},
        ])
    );
}

#[test]
fn q6_users_joined_per_year_within_2015_to_2020() {
    // 2014 (5) and 2021 (6) are out, 13 joined never; 2016 counts post 8's user once.
    assert_eq!(
        rows("6"),
        json!([
            {"post_year": 2015, "number_users_joined": 3},
            {"post_year": 2016, "number_users_joined": 2},
            {"post_year": 2017, "number_users_joined": 2},
            {"post_year": 2018, "number_users_joined": 1},
            {"post_year": 2019, "number_users_joined": 2},
            {"post_year": 2020, "number_users_joined": 1},
        ])
    );
}

#[test]
fn q7_median_follower_count_per_joining_year() {
    // 2015: [20, 40, 2000] → 40. 2016: [30, 3000] → 30. 2017: [50, 60] → 50. 2018: [70].
    // 2019: [999999, 1000000] → 999999. 2020: [40].
    assert_eq!(
        rows("7"),
        json!([
            {"post_year": 2015, "median_follower_count": 40},
            {"post_year": 2016, "median_follower_count": 30},
            {"post_year": 2017, "median_follower_count": 50},
            {"post_year": 2018, "median_follower_count": 70},
            {"post_year": 2019, "median_follower_count": 999999},
            {"post_year": 2020, "median_follower_count": 40},
        ])
    );
}

#[test]
fn q8_median_follower_count_per_age_group_and_joining_year() {
    assert_eq!(
        rows("8"),
        json!([
            {"age_group": "18-24", "post_year": 2015, "median_follower_count": 20},
            {"age_group": "18-24", "post_year": 2016, "median_follower_count": 30},
            {"age_group": "18-24", "post_year": 2020, "median_follower_count": 40},
            {"age_group": "25-35", "post_year": 2015, "median_follower_count": 2000},
            {"age_group": "25-35", "post_year": 2019, "median_follower_count": 999999},
            {"age_group": "36-50", "post_year": 2016, "median_follower_count": 3000},
            {"age_group": "36-50", "post_year": 2017, "median_follower_count": 50},
            {"age_group": "+50", "post_year": 2017, "median_follower_count": 60},
            {"age_group": "+50", "post_year": 2018, "median_follower_count": 70},
        ])
    );
}

#[test]
fn one_question_as_csv() {
    assert_eq!(
        pinpipe(&["--question", "6", "--format", "csv"]),
        "post_year,number_users_joined\n2015,3\n2016,2\n2017,2\n2018,1\n2019,2\n2020,1\n"
    );
    let both_parts = pinpipe(&["-q", "3", "--format", "csv"]);
    assert!(
        both_parts
            .starts_with("# 3. The user with the most followers in each country\ncountry,poster_name,follower_count\n")
    );
    assert!(
        both_parts.contains(
            "\n\n# 3b. The country whose top user has the most followers\ncountry,follower_count\nChad,3000\n"
        )
    );
}

#[test]
fn aligned_tables_by_default() {
    let out = pinpipe(&["--question", "5"]);
    let expected = "\
5. Median follower count per age group
+-----------+-----------------------+
| age_group | median_follower_count |
+-----------+-----------------------+
| 18-24     | 30                    |
| 25-35     | 2000                  |
| 36-50     | 50                    |
| +50       | 60                    |
+-----------+-----------------------+
";
    assert_eq!(out, expected);
}

#[test]
fn ad_hoc_sql_over_the_tables_and_the_unique_views() {
    let out = pinpipe(&["--format", "csv", "--sql", "SELECT COUNT(*) AS n FROM pin"]);
    assert_eq!(out, "n\n15\n", "post 8 is stored twice");
    let out = pinpipe(&["--format", "csv", "--sql", "SELECT COUNT(*) AS n FROM unique_pin"]);
    assert_eq!(out, "n\n14\n");
    let out = pinpipe(&[
        "--format",
        "json",
        "--sql",
        r#"SELECT u.user_name, u.age FROM "user" u JOIN geo g ON u.ind = g.ind WHERE g.country IS NULL"#,
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows"], json!([{"user_name": "Lu Doe", "age": 17}]));
    assert_eq!(v["question"], "sql");
    // Rescued fields are on the tables, as JSON text that SQL can take apart.
    let out = pinpipe(&["--format", "json", "--sql", "SELECT ind, _rescued FROM pin WHERE _rescued IS NOT NULL"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows"], json!([{"ind": 14, "_rescued": r#"{"new_field":{"source":"app"}}"#}]));
    // No quarantine table in this lake: an empty one stands in.
    let out = pinpipe(&["--format", "csv", "--sql", "SELECT COUNT(*) AS n FROM quarantine"]);
    assert_eq!(out, "n\n0\n");
}

#[test]
fn bad_sql_fails_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_pinpipe"))
        .args(["query", "--lake"])
        .arg(lake().path())
        .args(["--sql", "SELECT nope FROM pin"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_missing_lake_is_an_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_pinpipe"))
        .args(["query", "--lake", "/nonexistent/pinpipe-lake"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no lake at"));
}

#[test]
fn charts_are_svg_bar_charts_one_per_answer() {
    let dir = tempfile::tempdir().unwrap();
    pinpipe(&["--format", "csv", "--chart", dir.path().to_str().unwrap()]);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["q1.svg", "q2.svg", "q3.svg", "q3b.svg", "q4.svg", "q5.svg", "q6.svg", "q7.svg", "q8.svg"]);
    for name in &names {
        let svg = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{name}: {svg}");
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""), "{name}");
        // Every opened element is closed (a cheap well-formedness check).
        let opened = svg.matches('<').count();
        let closed = svg.matches("/>").count() + svg.matches("</").count() * 2;
        assert_eq!(opened, closed, "{name}: unbalanced tags");
    }
    let q5 = std::fs::read_to_string(dir.path().join("q5.svg")).unwrap();
    assert!(q5.contains("Median follower count per age group"));
    // One bar per age group, labelled, with its value.
    for label in ["18-24", "25-35", "36-50", "+50", "2,000"] {
        assert!(q5.contains(&format!("\n{label}\n</text>")), "q5.svg lacks {label}");
    }
    assert!(q5.matches("<rect").count() >= 5, "a background and four bars");
}

/// The same lake on S3, when `scripts/test.sh` has started moto (skipped otherwise).
#[test]
fn the_lake_may_live_on_s3() {
    let endpoint = match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1:") => url,
        _ => {
            eprintln!("skipped: no moto server (run scripts/test.sh)");
            return;
        }
    };
    let bucket = format!("pinpipe-query-{}", std::process::id());
    let root = format!("s3://{bucket}/lake");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
        assert!(created.status().is_success(), "creating the bucket in moto: {}", created.status());
        write_lake(&Lake::new(root.clone())).await;
    });
    let out = pinpipe_on(&root, &["--question", "5", "--format", "csv"]);
    assert_eq!(out, "age_group,median_follower_count\n18-24,30\n25-35,2000\n36-50,50\n+50,60\n");
}
