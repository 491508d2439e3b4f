//! JSON in and out of SQLite: parameters bound from JSON values, rows read into JSON objects,
//! and a page of rows bounded by count and by encoded size.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::Statement;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Number, Value};

use super::SqlError;

/// The one-key object a BLOB travels as, both ways: `{"base64": "…"}`.
pub const BLOB_KEY: &str = "base64";
/// Most parameters one statement may bind (also `SQLITE_LIMIT_VARIABLE_NUMBER`).
pub const MAX_PARAMS: usize = 100;

/// A statement's parameters as the request gave them: by position (`?`, `?NNN`) or by name
/// (`:name`, `@name`, `$name`; the name may be given with or without its prefix).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Params {
    #[default]
    None,
    Positional(Vec<Value>),
    Named(Map<String, Value>),
}

impl Params {
    /// From the request's `params` field: an array, an object, or absent/null.
    pub fn from_json(value: Option<Value>) -> Result<Params, SqlError> {
        let params = match value {
            None | Some(Value::Null) => Params::None,
            Some(Value::Array(items)) => Params::Positional(items),
            Some(Value::Object(map)) => Params::Named(map),
            Some(_) => {
                return Err(SqlError::Invalid(
                    "params must be an array (for ? parameters) or an object (for :name parameters)"
                        .into(),
                ));
            }
        };
        if params.len() > MAX_PARAMS {
            return Err(SqlError::Invalid(format!(
                "{} params given; at most {MAX_PARAMS}",
                params.len()
            )));
        }
        Ok(params)
    }

    fn len(&self) -> usize {
        match self {
            Params::None => 0,
            Params::Positional(v) => v.len(),
            Params::Named(m) => m.len(),
        }
    }

    /// Binds every parameter of `stmt`, or says which is missing or unknown: a statement runs
    /// with all of its parameters bound, never with a silent NULL.
    pub fn bind(&self, stmt: &mut Statement<'_>) -> Result<(), SqlError> {
        let wanted = stmt.parameter_count();
        match self {
            Params::None | Params::Positional(_) => {
                let values: &[Value] = match self {
                    Params::Positional(v) => v,
                    _ => &[],
                };
                if values.len() != wanted {
                    return Err(SqlError::Invalid(format!(
                        "the statement has {wanted} parameter(s); {} given",
                        values.len()
                    )));
                }
                for (i, v) in values.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 1, to_sql(v)?)
                        .map_err(SqlError::from)?;
                }
            }
            Params::Named(map) => {
                let mut bound = 0;
                for (name, v) in map {
                    let index = named_index(stmt, name)?.ok_or_else(|| {
                        SqlError::Invalid(format!("the statement has no parameter named {name}"))
                    })?;
                    stmt.raw_bind_parameter(index, to_sql(v)?)
                        .map_err(SqlError::from)?;
                    bound += 1;
                }
                if bound != wanted {
                    return Err(SqlError::Invalid(format!(
                        "the statement has {wanted} parameter(s); {bound} given (name each one)"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn named_index(stmt: &Statement<'_>, name: &str) -> Result<Option<usize>, SqlError> {
    if name.starts_with([':', '@', '$']) {
        return stmt.parameter_index(name).map_err(SqlError::from);
    }
    for prefix in [':', '@', '$'] {
        if let Some(i) = stmt
            .parameter_index(&format!("{prefix}{name}"))
            .map_err(SqlError::from)?
        {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// A JSON value as SQLite stores it: numbers as INTEGER or REAL, booleans as 1/0, strings as
/// TEXT, `{"base64": "…"}` as a BLOB, other arrays and objects as their JSON text (which
/// SQLite's JSON functions read).
pub fn to_sql(v: &Value) -> Result<SqlValue, SqlError> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => SqlValue::Integer(i),
            (None, Some(f)) => SqlValue::Real(f),
            (None, None) => {
                return Err(SqlError::Invalid(format!(
                    "the number {n} does not fit SQLite"
                )));
            }
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Object(m) if m.len() == 1 && m.get(BLOB_KEY).is_some_and(Value::is_string) => {
            let text = m.get(BLOB_KEY).and_then(Value::as_str).unwrap_or_default();
            let bytes = STANDARD.decode(text).map_err(|_| {
                SqlError::Invalid(format!(
                    "a {{\"{BLOB_KEY}\": …}} parameter must hold standard base64"
                ))
            })?;
            SqlValue::Blob(bytes)
        }
        other => SqlValue::Text(other.to_string()),
    })
}

/// A stored value as JSON: a REAL that JSON cannot write (infinite) is `null`; a BLOB is
/// `{"base64": "…"}`; TEXT that is not UTF-8 has its bad bytes replaced.
pub fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            let mut m = Map::new();
            m.insert(BLOB_KEY.into(), Value::String(STANDARD.encode(b)));
            Value::Object(m)
        }
    }
}

/// Result column names, made unique so that each names one key of a row object: a repeated
/// name gets `:2`, `:3`… (`SELECT a.id, b.id` → `id`, `id:2`).
pub fn column_names(stmt: &Statement<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(stmt.column_count());
    for name in stmt.column_names() {
        let mut unique = name.to_string();
        let mut n = 1;
        while out.contains(&unique) {
            n += 1;
            unique = format!("{name}:{n}");
        }
        out.push(unique);
    }
    out
}

/// How much of a result one answer carries.
#[derive(Debug, Clone, Copy)]
pub struct PageSpec {
    /// Rows to skip first.
    pub offset: u64,
    /// Most rows returned.
    pub limit: usize,
    /// Most bytes of rows, encoded as JSON.
    pub max_bytes: usize,
}

/// One page of a result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
    /// Where the next page starts, when there are more rows.
    pub next_offset: Option<u64>,
    /// Why the page is shorter than `limit` although more rows exist (the size cap).
    pub note: Option<String>,
}

/// Collects rows into a page: skips `offset`, keeps at most `limit` rows and `max_bytes` of
/// them, and steps once more to learn whether more exist (for `next_offset`). With `drain`
/// (writes with RETURNING), every row is stepped so the statement completes.
pub fn collect(
    mut rows: rusqlite::Rows<'_>,
    columns: Vec<String>,
    page: PageSpec,
    drain: bool,
) -> Result<SqlRows, SqlError> {
    let mut out = SqlRows {
        columns,
        ..SqlRows::default()
    };
    let mut index: u64 = 0;
    let mut bytes = 0usize;
    let mut full = false;
    while let Some(row) = rows.next().map_err(SqlError::from)? {
        let at = index;
        index += 1;
        if at < page.offset {
            continue;
        }
        if full {
            if drain {
                continue;
            }
            break;
        }
        if out.rows.len() >= page.limit {
            full = true;
            out.next_offset = Some(at);
            if drain {
                continue;
            }
            break;
        }
        // A lower bound of the row's JSON size from SQLite's own lengths, before anything is
        // converted: a row of 200 one-megabyte BLOBs must not be base64-encoded to be refused.
        let mut least = 2usize;
        for i in 0..out.columns.len() {
            least = least.saturating_add(match row.get_ref(i).map_err(SqlError::from)? {
                ValueRef::Text(t) => t.len(),
                ValueRef::Blob(b) => b.len() / 3 * 4,
                _ => 1,
            });
        }
        let size = if bytes.saturating_add(least) > page.max_bytes {
            least
        } else {
            let mut object = Map::with_capacity(out.columns.len());
            for (i, name) in out.columns.iter().enumerate() {
                object.insert(
                    name.clone(),
                    to_json(row.get_ref(i).map_err(SqlError::from)?),
                );
            }
            let size = serde_json::to_string(&object).map_or(usize::MAX, |s| s.len() + 1);
            if bytes.saturating_add(size) <= page.max_bytes {
                out.rows.push(object);
            }
            size
        };
        if bytes.saturating_add(size) > page.max_bytes {
            full = true;
            if out.rows.is_empty() {
                out.note = Some(format!(
                    "row {at} alone is {size} bytes as JSON, over the {} bytes one answer may carry; select fewer or shorter columns (e.g. substr(col, 1, 1000), length(col))",
                    page.max_bytes
                ));
            } else {
                out.next_offset = Some(at);
                out.note = Some(format!(
                    "result cut at {} bytes after {} row(s); the rest from offset {at}",
                    page.max_bytes,
                    out.rows.len()
                ));
            }
            if drain {
                continue;
            }
            break;
        }
        bytes += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_round_trip_through_sqlite_types() {
        let blob = json!({"base64": "AAEC"});
        assert_eq!(to_sql(&blob).unwrap(), SqlValue::Blob(vec![0, 1, 2]));
        assert_eq!(to_json(ValueRef::Blob(&[0, 1, 2])), blob);
        assert_eq!(to_sql(&json!(true)).unwrap(), SqlValue::Integer(1));
        assert_eq!(to_sql(&json!(1.5)).unwrap(), SqlValue::Real(1.5));
        assert_eq!(
            to_sql(&json!({"a": 1})).unwrap(),
            SqlValue::Text("{\"a\":1}".into())
        );
        assert_eq!(to_json(ValueRef::Real(f64::INFINITY)), Value::Null);
        assert!(to_sql(&json!({"base64": "not base64!"})).is_err());
    }

    #[test]
    fn params_must_be_an_array_or_an_object() {
        assert!(Params::from_json(Some(json!("x"))).is_err());
        assert_eq!(Params::from_json(None).unwrap(), Params::None);
        let many = Value::Array(vec![Value::Null; MAX_PARAMS + 1]);
        assert!(Params::from_json(Some(many)).is_err());
    }
}
