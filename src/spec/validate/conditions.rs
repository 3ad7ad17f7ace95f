//! Checks of a flow's conditions — `where:` and the `when:` of each of its `checks:`: each
//! gives exactly one test that parses, and names fields the record can have (the contract's
//! properties and the flow's lookups); checks have distinct names.

use super::workspace::Checked;
use super::{At, Report};
use crate::spec::diagnostic::{Code, did_you_mean};
use crate::spec::filter::{ConditionConfig, TESTS, first_field_of};
use crate::spec::raw::FlowFile;

/// Reports every `where:` condition and check that cannot work, at its line, with the fix.
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
    let has_sla = spec.sla.as_ref().is_some_and(|sla| sla.freshness.is_some());
    let context = Context {
        spec,
        at,
        fields: fields.as_deref(),
        has_sla,
    };
    for (index, condition) in spec.filter.iter().enumerate() {
        context.condition(condition, &format!("/where/{index}"), "where", report);
    }
    let mut names: Vec<&str> = Vec::new();
    for (index, check) in spec.checks.iter().enumerate() {
        let base = format!("/checks/{index}");
        if check.name.trim().is_empty() {
            report.push(
                at.error(
                    &format!("{base}/name"),
                    Code::InvalidValue,
                    "a check needs a name".to_owned(),
                )
                .with_hint(Some(
                    "name what it flags, such as `stock-stale`: the name is the dead letter's \
                     reason"
                        .into(),
                )),
            );
        } else if names.contains(&check.name.as_str()) {
            report.push(
                at.error(
                    &format!("{base}/name"),
                    Code::InvalidValue,
                    format!("check \"{}\" is declared twice", check.name),
                )
                .with_hint(Some(
                    "give each check its own name: dead letters are told apart by it".into(),
                )),
            );
        }
        names.push(&check.name);
        context.condition(&check.when, &format!("{base}/when"), "check", report);
    }
}

struct Context<'a> {
    spec: &'a FlowFile,
    at: &'a At<'a>,
    fields: Option<&'a [String]>,
    has_sla: bool,
}

impl Context<'_> {
    fn condition(
        &self,
        condition: &ConditionConfig,
        base: &str,
        what: &str,
        report: &mut Report<'_>,
    ) {
        let at = self.at;
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
                at.key_error(base, Code::InvalidValue, message)
                    .with_hint(Some(format!(
                        "give exactly one of {TESTS} (write several conditions to test several \
                         things)"
                    ))),
            );
        }
        if let Some(age) = &condition.older_than {
            let pointer = format!("{base}/older_than");
            if age == "sla" {
                if !self.has_sla {
                    report.push(
                        at.error(
                            &pointer,
                            Code::InvalidValue,
                            "`older_than: sla` reads the flow's `sla.freshness`, which it does \
                             not declare"
                                .to_owned(),
                        )
                        .with_hint(Some(
                            "add `sla: { freshness: 15m }` to the flow, or give a duration \
                             such as `older_than: 1d`"
                                .into(),
                        )),
                    );
                }
            } else {
                at.duration(&pointer, age, report);
            }
        }
        self.field(&condition.field, &format!("{base}/field"), what, report);
        if let Some(other) = &condition.less_than_field {
            self.field(other, &format!("{base}/less_than_field"), what, report);
        }
    }

    fn field(&self, field: &str, pointer: &str, what: &str, report: &mut Report<'_>) {
        let at = self.at;
        let Some(first) = first_field_of(field) else {
            report.push(
                at.error(
                    pointer,
                    Code::InvalidValue,
                    format!("`{field}` names no field"),
                )
                .with_hint(Some(
                    "write a field path such as `order_state` or a JSON Pointer such as \
                         `/order_state`"
                        .into(),
                )),
            );
            return;
        };
        if let Some(fields) = self.fields
            && !fields.contains(&first)
        {
            report.push(
                at.error(
                    pointer,
                    Code::UnknownTemplateField,
                    format!(
                        "`{what}` tests field \"{first}\", which is not in the contract of object \
                         \"{}\"",
                        self.spec.object
                    ),
                )
                .with_hint(did_you_mean(&first, fields.iter().map(String::as_str))),
            );
        }
    }
}
