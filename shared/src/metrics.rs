//! CloudWatch Embedded Metric Format: one JSON line per batch on stdout, which Lambda's log
//! pipeline turns into metrics without an API call on the hot path.

use serde_json::{Map, Value, json};

/// The namespace pinpipe's metrics live in.
pub const NAMESPACE: &str = "pinpipe";

/// One EMF document: `metrics` are `(name, unit, value)`, `dimensions` name the series.
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[(&str, &str, f64)], timestamp_ms: i64) -> String {
    let definitions: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": definitions,
            }],
        }),
    );
    for (key, value) in dimensions {
        doc.insert((*key).into(), Value::from(*value));
    }
    for (name, _, value) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

/// Prints an EMF document for `function` (the dimension every pinpipe metric carries) and table,
/// when running in Lambda; elsewhere (the CLI, tests) the figures are in the logs already.
pub fn emit(function: &str, table: &str, metrics: &[(&str, &str, f64)]) {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*IN_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()) {
        return;
    }
    println!(
        "{}",
        emf_line(&[("Function", function), ("Table", table)], metrics, chrono::Utc::now().timestamp_millis())
    );
}

/// Counts one failed batch of `function` for `table` (`BatchFailures`: the template's alarms
/// watch it). The figures of a committed batch are emitted by `sink::TableTotals::emit`.
pub fn emit_batch_failure(function: &str, table: &str) {
    emit(function, table, &[("BatchFailures", "Count", 1.0)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metrics_and_carries_their_values() {
        let line =
            emf_line(&[("Table", "pin")], &[("RowsWritten", "Count", 42.0), ("DurationMs", "Milliseconds", 7.5)], 1);
        let doc: Value = serde_json::from_str(&line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "pinpipe");
        assert_eq!(directive["Dimensions"], json!([["Table"]]));
        assert_eq!(directive["Metrics"][1], json!({"Name": "DurationMs", "Unit": "Milliseconds"}));
        assert_eq!(doc["Table"], "pin");
        assert_eq!(doc["RowsWritten"], 42.0);
        assert_eq!(doc["_aws"]["Timestamp"], 1);
    }
}
