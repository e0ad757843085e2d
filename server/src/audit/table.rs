//! The log as an Arrow table, so the server can register it with DataFusion and auditors can
//! query it in SQL. One row per record; the schema is stable (columns are only ever added at
//! the end) and is documented on [`records_schema`].

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray,
    UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::error::AuditError;
use super::record::Record;

fn list_item() -> Field {
    Field::new_list_field(DataType::Utf8, false)
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(list_item()))
}

/// The schema of [`records_batch`], in column order:
///
/// | column | type | meaning |
/// |---|---|---|
/// | `sequence` | UInt64 | position in the log, from 0 |
/// | `time` | Timestamp(ms, UTC) | when the record was appended |
/// | `kind` | Utf8 | `query-completed`, `auth-failed`, … ([`Kind::as_str`](super::Kind::as_str)) |
/// | `principal`, `role`, `project`, `purpose` | Utf8 | who, in which project, for what |
/// | `request_id` | UInt64 | links a query's started and completed records |
/// | `statement` | Utf8 | SQL text, or report name and parameters |
/// | `plan_hash` | Utf8 | hash of the canonical plan |
/// | `tables_read`, `columns_read`, `opt_out_filters` | `List<Utf8>` | what the plan read and which opt-outs applied |
/// | `rows_scanned`, `rows_returned`, `rows_suppressed` | UInt64 | row counts |
/// | `rules_applied` | `List<Utf8>` | output-control rules applied |
/// | `budget_spent`, `budget_remaining` | UInt32 | query budget |
/// | `result_hash` | Utf8 | hash of the result bytes as streamed |
/// | `outcome` | Utf8 | `none`, `ok`, `refused` or `error` |
/// | `rule_id` | Utf8, nullable | the refusing rule, for `refused` |
/// | `error_category` | Utf8, nullable | the error category, for `error` |
/// | `duration_ms` | UInt64 | how long the request took |
/// | `detail` | `List<Utf8>` | extra `key=value` pairs (config and policy hashes, peer, …) |
/// | `prev_hash` | Utf8 | hex hash of the previous record |
/// | `leaf_hash` | Utf8 | hex Merkle leaf hash of this record (for inclusion proofs) |
///
/// List items are never null. All other columns are non-null unless marked.
pub fn records_schema() -> SchemaRef {
    let s = |name: &str| Field::new(name, DataType::Utf8, false);
    let u64f = |name: &str| Field::new(name, DataType::UInt64, false);
    let u32f = |name: &str| Field::new(name, DataType::UInt32, false);
    let list = |name: &str| Field::new(name, utf8_list(), false);
    Arc::new(Schema::new(vec![
        u64f("sequence"),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        s("kind"),
        s("principal"),
        s("role"),
        s("project"),
        s("purpose"),
        u64f("request_id"),
        s("statement"),
        s("plan_hash"),
        list("tables_read"),
        list("columns_read"),
        list("opt_out_filters"),
        u64f("rows_scanned"),
        u64f("rows_returned"),
        u64f("rows_suppressed"),
        list("rules_applied"),
        u32f("budget_spent"),
        u32f("budget_remaining"),
        s("result_hash"),
        s("outcome"),
        Field::new("rule_id", DataType::Utf8, true),
        Field::new("error_category", DataType::Utf8, true),
        u64f("duration_ms"),
        list("detail"),
        s("prev_hash"),
        s("leaf_hash"),
    ]))
}

/// One row per record, with the schema of [`records_schema`].
pub fn records_batch(records: &[Record]) -> Result<RecordBatch, AuditError> {
    let u64col = |f: &dyn Fn(&Record) -> u64| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<UInt64Array>())
    };
    let u32col = |f: &dyn Fn(&Record) -> u32| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<UInt32Array>())
    };
    let strcol = |f: &dyn Fn(&Record) -> String| -> ArrayRef {
        Arc::new(records.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let optcol = |f: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let listcol = |f: &dyn Fn(&Record) -> Vec<String>| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(list_item()));
        for r in records {
            for item in f(r) {
                b.values().append_value(item);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let times: TimestampMillisecondArray = records.iter().map(|r| Some(r.unix_ms)).collect();
    let columns: Vec<ArrayRef> = vec![
        u64col(&|r| r.sequence),
        Arc::new(times.with_timezone("UTC")),
        strcol(&|r| r.entry.kind.as_str().to_string()),
        strcol(&|r| r.entry.principal.clone()),
        strcol(&|r| r.entry.role.clone()),
        strcol(&|r| r.entry.project.clone()),
        strcol(&|r| r.entry.purpose.clone()),
        u64col(&|r| r.entry.request_id),
        strcol(&|r| r.entry.statement.clone()),
        strcol(&|r| r.entry.plan_hash.clone()),
        listcol(&|r| r.entry.tables_read.clone()),
        listcol(&|r| r.entry.columns_read.clone()),
        listcol(&|r| r.entry.opt_out_filters.clone()),
        u64col(&|r| r.entry.rows_scanned),
        u64col(&|r| r.entry.rows_returned),
        u64col(&|r| r.entry.rows_suppressed),
        listcol(&|r| r.entry.rules_applied.clone()),
        u32col(&|r| r.entry.budget_spent),
        u32col(&|r| r.entry.budget_remaining),
        strcol(&|r| r.entry.result_hash.clone()),
        strcol(&|r| r.entry.outcome.kind().as_str().to_string()),
        optcol(&|r| r.entry.outcome.rule_id()),
        optcol(&|r| r.entry.outcome.error_category()),
        u64col(&|r| r.entry.duration_ms),
        listcol(&|r| {
            r.entry
                .detail
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        }),
        strcol(&|r| hex::encode(r.prev_hash)),
        strcol(&|r| hex::encode(r.leaf_hash())),
    ];
    Ok(RecordBatch::try_new(records_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Entry, Kind, Outcome};

    #[test]
    fn one_row_per_record_with_the_documented_schema() {
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                sequence: i,
                unix_ms: 1000 + i as i64,
                prev_hash: [0; 32],
                entry: Entry {
                    kind: Kind::QueryRefused,
                    tables_read: vec!["a".into(), "b".into()],
                    outcome: Outcome::Refused { rule: "R1".into() },
                    detail: vec![("peer".into(), "x".into())],
                    ..Entry::default()
                },
            })
            .collect();
        let batch = records_batch(&records).expect("batch");
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.schema(), records_schema());
        let empty = records_batch(&[]).expect("empty batch");
        assert_eq!(empty.num_rows(), 0);
    }
}
