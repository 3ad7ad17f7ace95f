//! Checks of a flow's `where:` conditions: each gives exactly one test, and names a field the
//! record can have (the contract's properties and the flow's lookups).

use super::workspace::Checked;
use super::{At, Report};
use crate::spec::diagnostic::{Code, did_you_mean};
use crate::spec::raw::FlowFile;

/// Reports every `where:` condition that cannot work, at its line, with the fix.
pub(crate) fn check_conditions(
    spec: &FlowFile,
    at: &At<'_>,
    workspace: &Checked,
    report: &mut Report<'_>,
) {
    // Lookups and enrichments add their fields before the conditions are evaluated.
    let fields = workspace.properties(&spec.object).map(|mut fields| {
        fields.extend(spec.lookup.keys().cloned());
        fields.extend(spec.enrich.keys().cloned());
        fields
    });
    for (index, condition) in spec.filter.iter().enumerate() {
        let base = format!("/where/{index}");
        let tests = condition.tests();
        if tests.len() != 1 {
            let message = if tests.is_empty() {
                format!("condition on `{}` gives no test", condition.field)
            } else {
                format!(
                    "condition on `{}` gives {} tests ({}); one condition tests one thing",
                    condition.field,
                    tests.len(),
                    tests.join(", ")
                )
            };
            report.push(
                at.key_error(&base, Code::InvalidValue, message)
                    .with_hint(Some(
                        "give exactly one of `equals`, `not_equals`, `one_of` or `exists` \
                         (write several conditions to test several things; all must hold)"
                            .into(),
                    )),
            );
        }
        let Some(first) = condition.first_field() else {
            report.push(
                at.error(
                    &format!("{base}/field"),
                    Code::InvalidValue,
                    format!("`{}` names no field", condition.field),
                )
                .with_hint(Some(
                    "write a field path such as `order_state` or a JSON Pointer such as `/order_state`"
                        .into(),
                )),
            );
            continue;
        };
        if let Some(fields) = &fields
            && !fields.contains(&first)
        {
            report.push(
                at.error(
                    &format!("{base}/field"),
                    Code::UnknownTemplateField,
                    format!(
                        "`where` tests field \"{first}\", which is not in the contract of object \"{}\"",
                        spec.object
                    ),
                )
                .with_hint(did_you_mean(&first, fields.iter().map(String::as_str))),
            );
        }
    }
}
