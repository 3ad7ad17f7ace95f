//! Compiles arbitrary templates and renders them over a fixed record: errors are fine,
//! panics are not. Also checks that the linear parser builds the tree Handlebars builds and
//! that the nesting scan never counts less than that tree holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::mapping::syntax::cross_check;
use switchyard::mapping::{CompiledTemplate, Escape, inspect};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(disagreement) = cross_check(source) {
        panic!("{source:?}: {disagreement}");
    }
    let _ = inspect(source);
    if let Ok(template) = CompiledTemplate::compile(source) {
        let record = serde_json::json!({
            "offer_id": 1, "price": "12.50", "title": "a \"b\" {c}", "lines": [{"sku": "x"}],
            "quantity": -1, "nested": {"deep": [1, 2, {"k": null}]}
        });
        let _ = template.evaluate(&record);
        let _ = template.render(&record, Escape::Url);
    }
});
