//! Notification text: config fields (`title`, `text`, `description`, `message`, ...) rendered
//! as Go templates over Alertmanager's template data, with Alertmanager's default templates
//! (`template/default.tmpl`) and Tocsin's `sms.default.message` defined.
//!
//! The template engine ([`crate::template`]) has no method calls, so the methods templates
//! call on Alertmanager's data are pre-computed as fields, and a template's text is rewritten
//! before parsing:
//!
//! | written | becomes | value |
//! |---|---|---|
//! | `.Alerts.Firing`, `.Alerts.Resolved` | `.FiringAlerts`, `.ResolvedAlerts` | the alerts of that status |
//! | `.X.SortedPairs` | `.XSortedPairs` | list of `{Name, Value}` sorted by name |
//! | `.X.Names`, `.X.SortedPairs.Names` | `.XNames` | sorted names |
//! | `.X.Values`, `.X.SortedPairs.Values` | `.XValues` | values in name order |
//! | `.CommonLabels.Remove .GroupLabels.Names` | `.CommonLabelsRemoveGroupLabels` | map |
//!
//! for `X` in `GroupLabels`, `CommonLabels`, `CommonAnnotations` (on the data) and `Labels`,
//! `Annotations` (on an alert). Other methods (`.StartsAt.Format`, `.Remove` with other
//! arguments) and Alertmanager's extra functions (`join`, `date`, `tz`, `stringSlice`,
//! `trimSpace`, `since`) are not available: a template using them fails to parse or render,
//! and the send is permanent with the field named. `.StartsAt`/`.EndsAt` are RFC 3339 strings.
//!
//! The config's `templates:` files (uploaded with the config, see
//! [`crate::notify::config::bundle`]) form a [`TemplateLibrary`] with the defaults below: a
//! field may call any template they define, and a file may redefine a default.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::message::{AlertData, NotificationData};
use crate::template::{Limits, Template, Value};

/// Alertmanager's default templates (the text ones; `email.default.html` simplified), adapted
/// to the engine (no `join`), and Tocsin's SMS and SNS defaults.
pub const DEFAULT_TEMPLATES: &str = r#"
{{ define "__alertmanager" }}Tocsin{{ end }}
{{ define "__alertmanagerURL" }}{{ .ExternalURL }}/api/v1/alerts{{ end }}
{{ define "__subject" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ range $i, $v := .GroupLabels.SortedPairs.Values }}{{ if $i }} {{ end }}{{ $v }}{{ end }} {{ if gt (len .CommonLabels) (len .GroupLabels) }}({{ range $i, $v := .CommonLabelsRemoveGroupLabelsValues }}{{ if $i }} {{ end }}{{ $v }}{{ end }}){{ end }}{{ end }}
{{ define "__description" }}{{ end }}
{{ define "__text_alert_list" }}{{ range . }}Labels:
{{ range .Labels.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Annotations:
{{ range .Annotations.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Source: {{ .GeneratorURL }}
{{ end }}{{ end }}
{{ define "slack.default.title" }}{{ template "__subject" . }}{{ end }}
{{ define "slack.default.username" }}{{ template "__alertmanager" . }}{{ end }}
{{ define "slack.default.fallback" }}{{ template "slack.default.title" . }} | {{ template "slack.default.titlelink" . }}{{ end }}
{{ define "slack.default.callbackid" }}{{ end }}
{{ define "slack.default.pretext" }}{{ end }}
{{ define "slack.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "slack.default.iconemoji" }}{{ end }}
{{ define "slack.default.iconurl" }}{{ end }}
{{ define "slack.default.text" }}{{ end }}
{{ define "slack.default.footer" }}{{ end }}
{{ define "pagerduty.default.description" }}{{ template "__subject" . }}{{ end }}
{{ define "pagerduty.default.client" }}{{ template "__alertmanager" . }}{{ end }}
{{ define "pagerduty.default.clientURL" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "pagerduty.default.instances" }}{{ template "__text_alert_list" . }}{{ end }}
{{ define "opsgenie.default.message" }}{{ template "__subject" . }}{{ end }}
{{ define "opsgenie.default.description" }}{{ range $i, $v := .CommonAnnotations.SortedPairs.Values }}{{ if $i }} {{ end }}{{ $v }}{{ end }}
{{ if gt (len .Alerts.Firing) 0 -}}
Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}
{{- end }}
{{ if gt (len .Alerts.Resolved) 0 -}}
Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}
{{- end }}
{{- end }}
{{ define "opsgenie.default.source" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "email.default.subject" }}{{ template "__subject" . }}{{ end }}
{{ define "email.default.html" }}<!DOCTYPE html>
<html><head><meta charset="UTF-8"><title>{{ template "__subject" . }}</title></head>
<body>
<h2>{{ .Alerts | len }} alert{{ if gt (len .Alerts) 1 }}s{{ end }} for{{ range .GroupLabels.SortedPairs }} {{ .Name }}={{ .Value }}{{ end }}</h2>
<p><a href="{{ template "__alertmanagerURL" . }}">View in {{ template "__alertmanager" . }}</a></p>
{{ if gt (len .Alerts.Firing) 0 }}<h3>[{{ .Alerts.Firing | len }}] Firing</h3>
<pre>{{ template "__text_alert_list" .Alerts.Firing }}</pre>{{ end }}
{{ if gt (len .Alerts.Resolved) 0 }}<h3>[{{ .Alerts.Resolved | len }}] Resolved</h3>
<pre>{{ template "__text_alert_list" .Alerts.Resolved }}</pre>{{ end }}
<p><a href="{{ .ExternalURL }}">Sent by {{ template "__alertmanager" . }}</a></p>
</body></html>
{{ end }}
{{ define "email.default.text" }}{{ template "__subject" . }}

{{ if gt (len .Alerts.Firing) 0 }}Firing:
{{ template "__text_alert_list" .Alerts.Firing }}{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}{{ end }}{{ end }}
{{ define "sns.default.subject" }}{{ template "__subject" . }}{{ end }}
{{ define "sns.default.message" }}{{ template "sms.default.message" . }}{{ end }}
{{ define "sms.default.message" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ range $i, $v := .GroupLabels.SortedPairs.Values }}{{ if $i }} {{ end }}{{ $v }}{{ end }}{{ with .CommonAnnotations.summary }} {{ . }}{{ else }}{{ range $i, $a := .Alerts }}{{ if eq $i 0 }}{{ with $a.Annotations.summary }} {{ . }}{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}
"#;

/// [`DEFAULT_TEMPLATES`] rewritten and parsed (only its definitions are used).
static DEFAULTS: std::sync::LazyLock<Result<Template, String>> = std::sync::LazyLock::new(|| {
    Template::parse_plain("default.tmpl", &rewrite(DEFAULT_TEMPLATES))
        .map_err(|e| format!("Tocsin's default templates do not parse: {e}"))
});

/// The named templates a config's fields can call: Alertmanager's defaults, then the
/// definitions of the config's `templates:` files in order. A later definition of a name
/// replaces an earlier one, as in Alertmanager (a file may redefine `slack.default.title`).
#[derive(Clone, Debug, Default)]
pub struct TemplateLibrary {
    files: Vec<Arc<Template>>,
}

impl TemplateLibrary {
    /// The defaults alone.
    pub fn defaults() -> Self {
        Self::default()
    }

    /// The defaults plus template files `(name, text)`, each parsed (method calls rewritten
    /// as in the module docs). Returns the index of the file that does not parse and why.
    pub fn with_files(files: &[(String, String)]) -> Result<Self, (usize, String)> {
        let mut parsed = Vec::with_capacity(files.len());
        for (i, (name, text)) in files.iter().enumerate() {
            let t = Template::parse_plain(name, &rewrite(text)).map_err(|e| (i, e.to_string()))?;
            parsed.push(Arc::new(t));
        }
        Ok(Self { files: parsed })
    }

    /// Names defined by the files (not the defaults), in order.
    pub fn defined_names(&self) -> Vec<String> {
        self.files
            .iter()
            .flat_map(|t| t.defined_names().map(str::to_owned))
            .collect()
    }

    /// Parses a field's text with every definition of the library callable.
    fn parse(&self, field: &str, text: &str) -> Result<Template, String> {
        let defaults = DEFAULTS.as_ref().map_err(Clone::clone)?;
        let mut libraries: Vec<&Template> = vec![defaults];
        libraries.extend(self.files.iter().map(|t| &**t));
        Template::parse_plain_with(field, &rewrite(text), &libraries).map_err(|e| e.to_string())
    }
}

/// Label-set fields whose methods are pre-computed.
const KV_FIELDS: [&str; 5] = [
    "GroupLabels",
    "CommonLabels",
    "CommonAnnotations",
    "Labels",
    "Annotations",
];

/// Rewrites Alertmanager's method calls into the pre-computed fields (see the module docs).
pub fn rewrite(source: &str) -> String {
    let mut s = source
        .replace(
            ".CommonLabels.Remove .GroupLabels.Names",
            ".CommonLabelsRemoveGroupLabels",
        )
        .replace(".Alerts.Firing", ".FiringAlerts")
        .replace(".Alerts.Resolved", ".ResolvedAlerts");
    for f in KV_FIELDS {
        s = s
            .replace(&format!(".{f}.SortedPairs.Values"), &format!(".{f}Values"))
            .replace(&format!(".{f}.SortedPairs.Names"), &format!(".{f}Names"))
            .replace(&format!(".{f}.SortedPairs"), &format!(".{f}SortedPairs"))
            .replace(&format!(".{f}.Names"), &format!(".{f}Names"))
            .replace(&format!(".{f}.Values"), &format!(".{f}Values"));
    }
    s
}

/// One templated config field, parsed once with the defaults defined.
#[derive(Clone, Debug)]
pub struct TextTemplate {
    field: String,
    source: String,
    parsed: Result<Option<Template>, String>,
}

impl TextTemplate {
    /// Parses `source` for the config field `field` (named in errors, e.g.
    /// `receivers[0].slack_configs[0].title`) with `library`'s templates callable. A parse
    /// error is kept and reported by [`TextTemplate::render`].
    pub fn new(field: &str, source: &str, library: &TemplateLibrary) -> Self {
        let parsed = if !source.contains("{{") {
            Ok(None)
        } else {
            library.parse(field, source).map(Some)
        };
        Self {
            field: field.to_owned(),
            source: source.to_owned(),
            parsed,
        }
    }

    /// The field's name.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Renders over `data` (from [`data_value`]); the error names the field.
    pub fn render(&self, data: &Value, external_url: &str) -> Result<String, String> {
        match &self.parsed {
            Ok(None) => Ok(self.source.clone()),
            Ok(Some(t)) => t
                .render_data(data, external_url, &Limits::default(), None)
                .map_err(|e| format!("template error in {}: {e}", self.field)),
            Err(e) => Err(format!("template error in {}: {e}", self.field)),
        }
    }
}

fn kv_fields(out: &mut Vec<(String, Value)>, name: &str, m: &BTreeMap<String, String>) {
    let pairs = m
        .iter()
        .map(|(k, v)| {
            Value::structure(
                "template.Pair",
                vec![
                    ("Name".into(), Value::string(k.clone())),
                    ("Value".into(), Value::string(v.clone())),
                ],
            )
        })
        .collect();
    out.push((name.to_owned(), Value::string_map(m.clone())));
    out.push((format!("{name}SortedPairs"), Value::list(pairs)));
    out.push((
        format!("{name}Names"),
        Value::list(m.keys().map(|k| Value::string(k.clone())).collect()),
    ));
    out.push((
        format!("{name}Values"),
        Value::list(m.values().map(|v| Value::string(v.clone())).collect()),
    ));
}

fn alert_value(a: &AlertData) -> Value {
    let mut f = vec![("Status".to_owned(), Value::string(a.status.clone()))];
    kv_fields(&mut f, "Labels", &a.labels);
    kv_fields(&mut f, "Annotations", &a.annotations);
    f.push(("StartsAt".into(), Value::string(a.starts_at.clone())));
    f.push(("EndsAt".into(), Value::string(a.ends_at.clone())));
    f.push((
        "GeneratorURL".into(),
        Value::string(a.generator_url.clone()),
    ));
    f.push(("Fingerprint".into(), Value::string(a.fingerprint.clone())));
    Value::structure("template.Alert", f)
}

/// Alertmanager's template data as a template value, with the pre-computed fields of the
/// module docs.
pub fn data_value(d: &NotificationData) -> Value {
    let alerts = |status: Option<&str>| {
        Value::list(
            d.alerts
                .iter()
                .filter(|a| status.is_none_or(|s| a.status == s))
                .map(alert_value)
                .collect(),
        )
    };
    let mut f = vec![
        ("Receiver".to_owned(), Value::string(d.receiver.clone())),
        ("Status".to_owned(), Value::string(d.status.clone())),
        ("Alerts".to_owned(), alerts(None)),
        ("FiringAlerts".to_owned(), alerts(Some("firing"))),
        ("ResolvedAlerts".to_owned(), alerts(Some("resolved"))),
    ];
    kv_fields(&mut f, "GroupLabels", &d.group_labels);
    kv_fields(&mut f, "CommonLabels", &d.common_labels);
    kv_fields(&mut f, "CommonAnnotations", &d.common_annotations);
    let mut rest = d.common_labels.clone();
    rest.retain(|k, _| !d.group_labels.contains_key(k));
    kv_fields(&mut f, "CommonLabelsRemoveGroupLabels", &rest);
    f.push(("ExternalURL".into(), Value::string(d.external_url.clone())));
    f.push(("GroupKey".into(), Value::string(d.group_key.clone())));
    f.push((
        "TruncatedAlerts".into(),
        Value::Int(i64::try_from(d.truncated_alerts).unwrap_or(i64::MAX)),
    ));
    Value::structure("template.Data", f)
}

/// A set of rendered fields for one send: renders each field or stops at the first error.
#[derive(Debug)]
pub struct Renderer<'a> {
    data: Value,
    external_url: &'a str,
}

impl<'a> Renderer<'a> {
    /// A renderer over `data`.
    pub fn new(data: &'a NotificationData) -> Self {
        Self {
            data: data_value(data),
            external_url: &data.external_url,
        }
    }

    /// Renders one field.
    pub fn render(&self, t: &TextTemplate) -> Result<String, String> {
        t.render(&self.data, self.external_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::deliver::message::GO_ZERO_TIME;

    fn data(status: &str) -> NotificationData {
        let labels: BTreeMap<String, String> = [
            ("alertname", "DiskFull"),
            ("instance", "db1"),
            ("severity", "critical"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let annotations: BTreeMap<String, String> =
            [("summary".to_owned(), "disk 95% full".to_owned())].into();
        NotificationData {
            receiver: "team".into(),
            status: status.into(),
            alerts: vec![AlertData {
                status: status.into(),
                labels: labels.clone(),
                annotations: annotations.clone(),
                starts_at: "2026-11-22T05:00:00.000Z".into(),
                ends_at: GO_ZERO_TIME.into(),
                generator_url: "http://t/a".into(),
                fingerprint: "00000000000000aa".into(),
            }],
            group_labels: [("alertname".to_owned(), "DiskFull".to_owned())].into(),
            common_labels: labels,
            common_annotations: annotations,
            external_url: "http://tocsin".into(),
            group_key: "{}:{alertname=\"DiskFull\"}".into(),
            truncated_alerts: 0,
        }
    }

    fn render(src: &str, d: &NotificationData) -> Result<String, String> {
        Renderer::new(d).render(&TextTemplate::new("f", src, &TemplateLibrary::defaults()))
    }

    #[test]
    fn fields_call_and_override_templates_of_the_config_files() {
        let library = TemplateLibrary::with_files(&[(
            "team.tmpl".into(),
            concat!(
                "{{ define \"team.title\" }}{{ .Status | toUpper }} {{ .CommonLabels.instance }}{{ end }}\n",
                "{{ define \"slack.default.title\" }}team: {{ template \"team.title\" . }}{{ end }}\n",
                "top-level text of a file is not output\n",
            )
            .into(),
        )])
        .unwrap();
        let d = data("firing");
        let r = Renderer::new(&d);
        let t = |src: &str| r.render(&TextTemplate::new("f", src, &library));
        assert_eq!(t("{{ template \"team.title\" . }}").unwrap(), "FIRING db1");
        assert_eq!(
            t("{{ template \"slack.default.title\" . }}").unwrap(),
            "team: FIRING db1",
            "a file redefines a default"
        );
        // Other defaults stay callable.
        assert_eq!(t("{{ template \"__alertmanager\" . }}").unwrap(), "Tocsin");
        let e = r
            .render(&TextTemplate::new(
                "f",
                "{{ template \"team.title\" . }}",
                &TemplateLibrary::defaults(),
            ))
            .unwrap_err();
        assert!(e.contains("team.title"), "{e}");
    }

    #[test]
    fn default_subject_is_alertmanagers() {
        assert_eq!(
            render(r#"{{ template "__subject" . }}"#, &data("firing")).unwrap(),
            "[FIRING:1] DiskFull (db1 critical)"
        );
        assert_eq!(
            render(r#"{{ template "sms.default.message" . }}"#, &data("firing")).unwrap(),
            "[FIRING:1] DiskFull disk 95% full"
        );
        assert_eq!(
            render(
                r#"{{ template "sms.default.message" . }}"#,
                &data("resolved")
            )
            .unwrap(),
            "[RESOLVED] DiskFull disk 95% full"
        );
    }

    #[test]
    fn methods_are_rewritten() {
        let d = data("firing");
        assert_eq!(
            render(
                "{{ .Alerts.Firing | len }}/{{ .Alerts.Resolved | len }}",
                &d
            )
            .unwrap(),
            "1/0"
        );
        let list = render(r#"{{ template "__text_alert_list" .Alerts.Firing }}"#, &d).unwrap();
        assert!(list.contains(" - instance = db1\n"), "{list}");
        assert!(list.contains("Source: http://t/a"), "{list}");
        assert_eq!(render("plain", &d).unwrap(), "plain");
        assert_eq!(
            render(
                "{{ range .CommonLabels.SortedPairs }}{{ .Name }};{{ end }}",
                &d
            )
            .unwrap(),
            "alertname;instance;severity;"
        );
    }

    #[test]
    fn every_default_renders() {
        let d = data("firing");
        for name in [
            "slack.default.title",
            "slack.default.fallback",
            "pagerduty.default.description",
            "opsgenie.default.description",
            "email.default.subject",
            "email.default.html",
            "email.default.text",
        ] {
            let out = render(&format!("{{{{ template \"{name}\" . }}}}"), &d);
            assert!(out.is_ok(), "{name}: {out:?}");
        }
        let out = render(
            r#"{{ template "pagerduty.default.instances" .Alerts.Firing }}"#,
            &d,
        );
        assert!(out.is_ok_and(|o| o.contains("Labels:")));
    }

    #[test]
    fn errors_name_the_field() {
        let t = TextTemplate::new(
            "receivers[0].slack_configs[0].title",
            "{{ .Nope.X }}",
            &TemplateLibrary::defaults(),
        );
        let err = Renderer::new(&data("firing")).render(&t).unwrap_err();
        assert!(err.contains("receivers[0].slack_configs[0].title"), "{err}");
        let t = TextTemplate::new("x.text", "{{ join }}", &TemplateLibrary::defaults());
        assert!(
            Renderer::new(&data("firing"))
                .render(&t)
                .unwrap_err()
                .contains("x.text")
        );
    }
}
