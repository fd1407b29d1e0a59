//! ProtoJSON field names. A2A's JSON is ProtoJSON, whose parsers accept a
//! field by its lowerCamelCase JSON name and by its proto name
//! (`message_id`, `task_id`, `history_length`, …). Every JSON body is
//! brought to the JSON names here, once, as it is read and before anything
//! looks at it — routing, scoping and validation included — so every field
//! of every operation is accepted both ways on both JSON bindings. What a
//! client put in a free-form value (`metadata`, a data part's `data`) is
//! its own, and kept as sent.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Fields whose values are free-form JSON (`google.protobuf.Struct` or
/// `Value`), not messages: their keys are never renamed.
const FREE_FORM: [&str; 2] = ["metadata", "data"];

/// Renames every proto field name in `value` (under `path`, for errors) to
/// its JSON name. A field given both ways in one object is refused, naming
/// it.
pub fn normalize(value: &mut Value, path: &str) -> Result<(), ApiError> {
    rename(value).map_err(|Twice { mut at, json, proto }| {
        // Built only for the error, from the inside out: no path is
        // assembled for a request that has no conflict.
        at.push(path.to_owned());
        at.retain(|segment| !segment.is_empty());
        at.reverse();
        let field =
            at.iter().fold(String::new(), |field, segment| match (field.is_empty(), segment.starts_with('[')) {
                (true, _) | (false, true) => field + segment,
                (false, false) => field + "." + segment,
            });
        let field = if field.is_empty() { json.clone() } else { format!("{field}.{json}") };
        ApiError::invalid_field(&field, format!("is given twice, as {json} and as {proto}: give one"))
    })
}

/// A field given both ways: where (innermost segment first), and its names.
struct Twice {
    at: Vec<String>,
    json: String,
    proto: String,
}

fn rename(value: &mut Value) -> Result<(), Twice> {
    match value {
        Value::Object(fields) => rename_fields(fields),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                rename(item).map_err(|mut twice| {
                    twice.at.push(format!("[{i}]"));
                    twice
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn rename_fields(fields: &mut Map<String, Value>) -> Result<(), Twice> {
    let proto_names: Vec<String> = fields.keys().filter(|k| is_proto_name(k)).cloned().collect();
    for proto in proto_names {
        let json = json_name(&proto);
        if fields.contains_key(&json) {
            return Err(Twice { at: Vec::new(), json, proto });
        }
        if let Some(inner) = fields.remove(&proto) {
            fields.insert(json, inner);
        }
    }
    for (name, inner) in fields.iter_mut() {
        if !FREE_FORM.contains(&name.as_str()) {
            rename(inner).map_err(|mut twice| {
                twice.at.push(name.clone());
                twice
            })?;
        }
    }
    Ok(())
}

/// A proto field name with an underscore: lower-case letters and digits in
/// words joined by single underscores (`task_id`, `page_size`).
fn is_proto_name(key: &str) -> bool {
    key.contains('_')
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .split('_')
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// protoc's JSON name: each letter after an underscore in upper case.
fn json_name(proto: &str) -> String {
    let mut out = String::with_capacity(proto.len());
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proto_names_become_json_names_except_in_free_form_values() {
        let mut request = json!({
            "message": {"message_id": "m", "task_id": "t", "context_id": "c", "role": "ROLE_USER",
                        "parts": [{"text": "x", "media_type": "text/plain"}, {"data": {"keep_me": 1}}],
                        "metadata": {"my_key": {"nested_key": 2}}},
            "configuration": {"history_length": 3, "return_immediately": true,
                              "task_push_notification_config": {"url": "https://h/x", "task_id": ""}},
            "metadata": {"trace_id": "x"},
        });
        normalize(&mut request, "params").expect("normalizes");
        assert_eq!(
            request,
            json!({
                "message": {"messageId": "m", "taskId": "t", "contextId": "c", "role": "ROLE_USER",
                            "parts": [{"text": "x", "mediaType": "text/plain"}, {"data": {"keep_me": 1}}],
                            "metadata": {"my_key": {"nested_key": 2}}},
                "configuration": {"historyLength": 3, "returnImmediately": true,
                                  "taskPushNotificationConfig": {"url": "https://h/x", "taskId": ""}},
                "metadata": {"trace_id": "x"},
            })
        );
    }

    #[test]
    fn a_field_given_both_ways_is_refused_by_name() {
        let mut request = json!({"message": {"messageId": "a", "message_id": "b"}});
        let refused = normalize(&mut request, "params").expect_err("refused");
        assert!(matches!(refused, ApiError::InvalidParams { field: Some(f), .. } if f == "params.message.messageId"));
    }

    #[test]
    fn only_proto_shaped_names_are_touched() {
        for key in ["taskId", "_private", "Task_id", "task__id", "task_", "tenant", "x-y"] {
            assert!(!is_proto_name(key), "{key}");
        }
        assert_eq!(json_name("push_notification_config"), "pushNotificationConfig");
        assert_eq!(json_name("status_timestamp_after"), "statusTimestampAfter");
    }
}
