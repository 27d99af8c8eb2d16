//! Receiver types: the integrations Tocsin delivers to, with Alertmanager's defaults applied.
//! Templated fields are kept as Go-template source; they are rendered at delivery time.

use std::collections::BTreeMap;
use std::fmt;

/// A credential; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The credential itself, for the delivery adapter.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A secret given inline or as a file the adapter reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Inline value.
    Inline(Secret),
    /// Path of a file holding the value.
    File(String),
}

/// TLS settings of an HTTP client or SMTP connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA bundle path.
    pub ca_file: Option<String>,
    /// Client certificate path.
    pub cert_file: Option<String>,
    /// Client key path.
    pub key_file: Option<String>,
    /// Server name for SNI and verification.
    pub server_name: Option<String>,
    /// Skip certificate verification.
    pub insecure_skip_verify: bool,
    /// Minimum TLS version (`TLS12`, `TLS13`).
    pub min_version: Option<String>,
}

/// How an HTTP integration authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpAuth {
    /// `basic_auth`.
    Basic {
        /// User name.
        username: String,
        /// Password, if any.
        password: Option<SecretSource>,
    },
    /// `authorization` or `bearer_token`: `Authorization: <scheme> <credentials>`.
    Authorization {
        /// Scheme, `Bearer` by default.
        scheme: String,
        /// Credentials.
        credentials: SecretSource,
    },
}

/// prometheus/common `http_config` (the supported subset; `oauth2` is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Authentication, if any.
    pub auth: Option<HttpAuth>,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Proxy URL.
    pub proxy_url: Option<String>,
    /// Follow 3xx redirects (default true).
    pub follow_redirects: bool,
    /// Allow HTTP/2 (default true).
    pub enable_http2: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            auth: None,
            tls: TlsConfig::default(),
            proxy_url: None,
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// A named receiver and its integrations.
#[derive(Clone, Debug, PartialEq)]
pub struct Receiver {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Integrations in a fixed type order (PagerDuty, Slack, webhook, email, Opsgenie, SNS,
    /// Twilio, Vonage), each in file order. SMS integrations form the fallback chain in this
    /// order.
    pub integrations: Vec<Integration>,
}

impl Receiver {
    /// Whether any integration wants resolved notifications (the group's `send_resolved`).
    pub fn send_resolved(&self) -> bool {
        self.integrations.iter().any(Integration::send_resolved)
    }
}

/// One integration of a receiver.
#[derive(Clone, Debug, PartialEq)]
pub enum Integration {
    /// PagerDuty Events API v2.
    PagerDuty(PagerDutyConfig),
    /// Slack incoming webhook or `chat.postMessage`.
    Slack(SlackConfig),
    /// Generic webhook with the Alertmanager v4 payload.
    Webhook(WebhookConfig),
    /// SMTP email.
    Email(EmailConfig),
    /// Opsgenie alerts API.
    Opsgenie(OpsgenieConfig),
    /// Amazon SNS.
    Sns(SnsConfig),
    /// Twilio SMS (Tocsin only).
    Twilio(TwilioConfig),
    /// Vonage SMS (Tocsin only).
    Vonage(VonageConfig),
}

impl Integration {
    /// Whether resolved alerts are sent.
    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::PagerDuty(c) => c.send_resolved,
            Integration::Slack(c) => c.send_resolved,
            Integration::Webhook(c) => c.send_resolved,
            Integration::Email(c) => c.send_resolved,
            Integration::Opsgenie(c) => c.send_resolved,
            Integration::Sns(c) => c.send_resolved,
            Integration::Twilio(c) => c.send_resolved,
            Integration::Vonage(c) => c.send_resolved,
        }
    }
    /// The config key's stem (`pagerduty`, `slack`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::PagerDuty(_) => "pagerduty",
            Integration::Slack(_) => "slack",
            Integration::Webhook(_) => "webhook",
            Integration::Email(_) => "email",
            Integration::Opsgenie(_) => "opsgenie",
            Integration::Sns(_) => "sns",
            Integration::Twilio(_) => "twilio",
            Integration::Vonage(_) => "vonage",
        }
    }
}

/// PagerDuty integration key: Events v2 `routing_key`, or a v1 `service_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PagerDutyKey {
    /// `routing_key` / `routing_key_file`.
    Routing(SecretSource),
    /// `service_key` / `service_key_file` (Events API v1 integration).
    Service(SecretSource),
}

/// `pagerduty_configs[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PagerDutyConfig {
    /// Send resolves (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// Integration key.
    pub key: PagerDutyKey,
    /// Events endpoint.
    pub url: String,
    /// Templated fields.
    pub client: String,
    /// Templated.
    pub client_url: String,
    /// Templated summary.
    pub description: String,
    /// Templated custom details.
    pub details: BTreeMap<String, String>,
    /// Images (src, alt, href).
    pub images: Vec<(String, String, String)>,
    /// Links (href, text).
    pub links: Vec<(String, String)>,
    /// Templated.
    pub source: String,
    /// Templated severity (default `error`).
    pub severity: String,
    /// Templated.
    pub class: String,
    /// Templated.
    pub component: String,
    /// Templated.
    pub group: String,
}

/// A Slack attachment field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackField {
    /// Title.
    pub title: String,
    /// Value.
    pub value: String,
    /// Short.
    pub short: Option<bool>,
}

/// A Slack attachment action button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackAction {
    /// `type` (`button`).
    pub kind: String,
    /// Label.
    pub text: String,
    /// Link.
    pub url: String,
    /// Style.
    pub style: String,
    /// Name (interactive).
    pub name: String,
    /// Value (interactive).
    pub value: String,
    /// Confirmation dialog: (title, text, ok_text, dismiss_text).
    pub confirm: Option<(String, String, String, String)>,
}

/// `slack_configs[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackConfig {
    /// Send resolves (default false).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// Webhook or API URL (from the global setting when absent).
    pub api_url: SecretSource,
    /// Templated fields.
    pub channel: String,
    /// Templated.
    pub username: String,
    /// Templated.
    pub color: String,
    /// Templated.
    pub title: String,
    /// Templated.
    pub title_link: String,
    /// Templated.
    pub pretext: String,
    /// Templated.
    pub text: String,
    /// Attachment fields.
    pub fields: Vec<SlackField>,
    /// Default `short` of fields.
    pub short_fields: bool,
    /// Templated.
    pub footer: String,
    /// Templated.
    pub fallback: String,
    /// Templated.
    pub callback_id: String,
    /// Templated.
    pub icon_emoji: String,
    /// Templated.
    pub icon_url: String,
    /// Templated.
    pub image_url: String,
    /// Templated.
    pub thumb_url: String,
    /// `link_names`.
    pub link_names: bool,
    /// `mrkdwn_in`.
    pub mrkdwn_in: Vec<String>,
    /// Buttons.
    pub actions: Vec<SlackAction>,
}

/// `webhook_configs[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Send resolves (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// Endpoint.
    pub url: SecretSource,
    /// Maximum alerts per payload (0 = all).
    pub max_alerts: u64,
}

/// `email_configs[]`, with the `global.smtp_*` defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct EmailConfig {
    /// Send resolves (default false).
    pub send_resolved: bool,
    /// Templated recipients.
    pub to: String,
    /// Templated sender.
    pub from: String,
    /// EHLO host name.
    pub hello: String,
    /// `host:port`.
    pub smarthost: String,
    /// SMTP user.
    pub auth_username: String,
    /// SMTP password.
    pub auth_password: Option<SecretSource>,
    /// CRAM-MD5 secret.
    pub auth_secret: Option<Secret>,
    /// PLAIN identity.
    pub auth_identity: String,
    /// Templated headers (canonical names; `Subject`, `To`, `From` default in).
    pub headers: BTreeMap<String, String>,
    /// Templated HTML body.
    pub html: String,
    /// Templated text body.
    pub text: String,
    /// Require STARTTLS.
    pub require_tls: bool,
    /// TLS settings.
    pub tls: TlsConfig,
}

/// An Opsgenie responder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Responder {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// User name.
    pub username: String,
    /// `team`, `teams`, `user`, `escalation`, `schedule` (or templated).
    pub kind: String,
}

/// `opsgenie_configs[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct OpsgenieConfig {
    /// Send resolves (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// API key.
    pub api_key: SecretSource,
    /// API base URL (ends with `/`).
    pub api_url: String,
    /// Templated fields.
    pub message: String,
    /// Templated.
    pub description: String,
    /// Templated.
    pub source: String,
    /// Templated details.
    pub details: BTreeMap<String, String>,
    /// Templated.
    pub entity: String,
    /// Responders.
    pub responders: Vec<Responder>,
    /// Templated, comma-separated.
    pub actions: String,
    /// Templated, comma-separated.
    pub tags: String,
    /// Templated.
    pub note: String,
    /// Templated (`P1`..`P5`).
    pub priority: String,
    /// Update the message and description of existing alerts.
    pub update_alerts: bool,
}

/// AWS Signature v4 settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigV4 {
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: Option<Secret>,
    /// Profile.
    pub profile: String,
    /// Role to assume.
    pub role_arn: String,
}

/// Where an SNS message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnsTarget {
    /// `topic_arn`.
    Topic(String),
    /// `phone_number` (SMS).
    Phone(String),
    /// `target_arn` (mobile endpoint).
    Target(String),
}

/// `sns_configs[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SnsConfig {
    /// Send resolves (default true).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// API endpoint override.
    pub api_url: Option<String>,
    /// Signing.
    pub sigv4: SigV4,
    /// Targets (Alertmanager accepts one; it also accepts all three, and sends to the topic).
    pub target: SnsTarget,
    /// Templated subject.
    pub subject: String,
    /// Templated message.
    pub message: String,
    /// Message attributes.
    pub attributes: BTreeMap<String, String>,
}

/// `twilio_configs[]` (Tocsin).
#[derive(Clone, Debug, PartialEq)]
pub struct TwilioConfig {
    /// Send resolves (default false: SMS costs per message).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// API base URL (default `https://api.twilio.com`).
    pub api_url: String,
    /// Account SID (basic-auth user).
    pub account_sid: String,
    /// Auth token.
    pub auth_token: SecretSource,
    /// Sender: a phone number or a messaging service SID.
    pub sender: SmsSender,
    /// Recipients (E.164).
    pub to: Vec<String>,
    /// Templated text.
    pub message: String,
}

/// The sender of a Twilio message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsSender {
    /// `from`.
    From(String),
    /// `messaging_service_sid`.
    MessagingService(String),
}

/// `vonage_configs[]` (Tocsin).
#[derive(Clone, Debug, PartialEq)]
pub struct VonageConfig {
    /// Send resolves (default false).
    pub send_resolved: bool,
    /// HTTP client settings.
    pub http: HttpConfig,
    /// API base URL (default `https://rest.nexmo.com`).
    pub api_url: String,
    /// API key.
    pub api_key: String,
    /// API secret.
    pub api_secret: SecretSource,
    /// Sender id or number.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Templated text.
    pub message: String,
}

/// Alertmanager's default SMS-sized text, shared by the SMS integrations.
pub const DEFAULT_SMS_MESSAGE: &str = r#"{{ template "sms.default.message" . }}"#;
