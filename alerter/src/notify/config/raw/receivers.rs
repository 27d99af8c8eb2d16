//! Raw receiver types (`receivers[]` and each integration's config).

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{OList, OS, PairList, RawHttpConfig, RawTlsConfig, S};

/// A receiver. Receiver types Tocsin does not implement are recognised so that the error can
/// name them instead of calling them unknown fields.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReceiver {
    #[serde(default)]
    pub name: OS,
    #[serde(default)]
    pub pagerduty_configs: OList<RawPagerDuty>,
    #[serde(default)]
    pub slack_configs: OList<RawSlack>,
    #[serde(default)]
    pub webhook_configs: OList<RawWebhook>,
    #[serde(default)]
    pub email_configs: OList<RawEmail>,
    #[serde(default)]
    pub opsgenie_configs: OList<RawOpsgenie>,
    #[serde(default)]
    pub sns_configs: OList<RawSns>,
    #[serde(default)]
    pub twilio_configs: OList<RawTwilio>,
    #[serde(default)]
    pub vonage_configs: OList<RawVonage>,
    #[serde(default)]
    pub victorops_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub wechat_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub telegram_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub discord_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub msteams_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub msteamsv2_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub webex_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub pushover_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub jira_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub rocketchat_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub mattermost_configs: OList<IgnoredAny>,
    #[serde(default)]
    pub incidentio_configs: OList<IgnoredAny>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPagerDuty {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub routing_key: OS,
    #[serde(default)]
    pub routing_key_file: OS,
    #[serde(default)]
    pub service_key: OS,
    #[serde(default)]
    pub service_key_file: OS,
    #[serde(default)]
    pub url: OS,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub client_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub details: Option<PairList>,
    #[serde(default)]
    pub images: Option<Vec<RawPdImage>>,
    #[serde(default)]
    pub links: Option<Vec<RawPdLink>>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPdImage {
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub alt: Option<String>,
    #[serde(default)]
    pub href: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPdLink {
    #[serde(default)]
    pub href: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub api_url: OS,
    #[serde(default)]
    pub api_url_file: OS,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_link: Option<String>,
    #[serde(default)]
    pub pretext: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub fields: Option<Vec<RawSlackField>>,
    #[serde(default)]
    pub short_fields: Option<bool>,
    #[serde(default)]
    pub footer: Option<String>,
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub callback_id: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
    #[serde(default)]
    pub icon_url: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub thumb_url: Option<String>,
    #[serde(default)]
    pub link_names: Option<bool>,
    #[serde(default)]
    pub mrkdwn_in: Option<Vec<String>>,
    #[serde(default)]
    pub actions: OList<RawSlackAction>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackField {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub short: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackAction {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub style: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub confirm: Option<RawSlackConfirm>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackConfirm {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub ok_text: Option<String>,
    #[serde(default)]
    pub dismiss_text: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub url: OS,
    #[serde(default)]
    pub url_file: OS,
    #[serde(default)]
    pub max_alerts: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub to: OS,
    #[serde(default)]
    pub from: OS,
    #[serde(default)]
    pub hello: OS,
    #[serde(default)]
    pub smarthost: OS,
    #[serde(default)]
    pub auth_username: OS,
    #[serde(default)]
    pub auth_password: OS,
    #[serde(default)]
    pub auth_password_file: OS,
    #[serde(default)]
    pub auth_secret: OS,
    #[serde(default)]
    pub auth_identity: OS,
    #[serde(default)]
    pub headers: Option<PairList>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub require_tls: Option<bool>,
    #[serde(default)]
    pub tls_config: Option<S<RawTlsConfig>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOpsgenie {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub api_key: OS,
    #[serde(default)]
    pub api_key_file: OS,
    #[serde(default)]
    pub api_url: OS,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub details: Option<PairList>,
    #[serde(default)]
    pub entity: Option<String>,
    #[serde(default)]
    pub responders: OList<RawResponder>,
    #[serde(default)]
    pub actions: Option<String>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub update_alerts: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResponder {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSns {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub api_url: OS,
    #[serde(default)]
    pub sigv4: Option<S<RawSigV4>>,
    #[serde(default)]
    pub topic_arn: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub target_arn: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub attributes: Option<PairList>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSigV4 {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// Tocsin's Twilio Programmable Messaging receiver.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTwilio {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub api_url: OS,
    #[serde(default)]
    pub account_sid: OS,
    #[serde(default)]
    pub auth_token: OS,
    #[serde(default)]
    pub auth_token_file: OS,
    #[serde(default)]
    pub from: OS,
    #[serde(default)]
    pub messaging_service_sid: OS,
    #[serde(default)]
    pub to: OList<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Tocsin's Vonage (Nexmo) SMS receiver.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVonage {
    #[serde(default)]
    pub send_resolved: Option<bool>,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub api_url: OS,
    #[serde(default)]
    pub api_key: OS,
    #[serde(default)]
    pub api_secret: OS,
    #[serde(default)]
    pub api_secret_file: OS,
    #[serde(default)]
    pub from: OS,
    #[serde(default)]
    pub to: OList<String>,
    #[serde(default)]
    pub message: Option<String>,
}
