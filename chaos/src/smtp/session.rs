//! The SMTP conversation as a pure state machine: lines in, replies and completed messages
//! out (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT).

use std::collections::BTreeMap;

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4); also used for data lines
/// (RFC 5321 allows 1000; we accept a little more from sloppy clients).
pub const MAX_LINE_BYTES: usize = 4096;
/// Largest message accepted (advertised with SIZE); past it, 552.
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Recipients per transaction (RFC 5321 minimum is 100).
pub const MAX_RECIPIENTS: usize = 100;
/// The name the server gives itself.
pub const SERVER_NAME: &str = "tocsin-chaos";

/// A message at the end of DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as received, dot-unstuffed, CRLF line endings.
    pub data: Vec<u8>,
}

impl Message {
    /// Headers (lowercase names, folded lines joined) and the body after the blank line.
    pub fn split(&self) -> (BTreeMap<String, String>, String) {
        let text = String::from_utf8_lossy(&self.data);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_ref(), ""));
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(name) = &last
                    && let Some(value) = headers.get_mut(name)
                {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_owned();
                headers
                    .entry(name.clone())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert(value);
                last = Some(name);
            }
        }
        (headers, body.to_owned())
    }
}

/// What the server does after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this reply (CRLF-terminated lines) and read on.
    Reply(String),
    /// Read on without replying (a data line).
    Continue,
    /// A complete message: the server decides the reply (faults apply here).
    Message(Message),
    /// Send this reply and close.
    Close(String),
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Command,
    Data {
        too_big: bool,
    },
}

/// One connection's state.
#[derive(Debug, Default)]
pub struct Session {
    phase: Phase,
    helo: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
}

fn reply(code: u16, text: &str) -> Step {
    Step::Reply(format!("{code} {text}\r\n"))
}

/// The address inside `FROM:<addr> params` / `TO:<addr>`, after `prefix`.
fn path_arg<'a>(args: &'a str, prefix: &str) -> Option<&'a str> {
    let head = args.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = args[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(&inner[..end])
}

impl Session {
    /// The greeting sent on connect.
    pub fn greeting() -> String {
        format!("220 {SERVER_NAME} ESMTP ready\r\n")
    }

    /// Handles one line (without its CRLF).
    pub fn on_line(&mut self, line: &[u8]) -> Step {
        match self.phase {
            Phase::Data { too_big } => self.on_data_line(line, too_big),
            Phase::Command => self.on_command(&String::from_utf8_lossy(line)),
        }
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
        self.data.clear();
        self.phase = Phase::Command;
    }

    fn on_data_line(&mut self, line: &[u8], too_big: bool) -> Step {
        if line == b"." {
            let step = if too_big {
                reply(552, "5.3.4 Message size exceeds fixed maximum message size")
            } else {
                Step::Message(Message {
                    helo: self.helo.clone().unwrap_or_default(),
                    mail_from: self.mail_from.clone().unwrap_or_default(),
                    rcpt_to: self.rcpt_to.clone(),
                    data: std::mem::take(&mut self.data),
                })
            };
            self.reset_transaction();
            return step;
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if too_big || self.data.len() + line.len() + 2 > MAX_MESSAGE_BYTES {
            self.data.clear();
            self.phase = Phase::Data { too_big: true };
        } else {
            self.data.extend_from_slice(line);
            self.data.extend_from_slice(b"\r\n");
        }
        Step::Continue
    }

    fn on_command(&mut self, line: &str) -> Step {
        let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
        let args = args.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if args.is_empty() => reply(501, "5.5.4 Syntax: EHLO hostname"),
            "EHLO" => {
                self.reset_transaction();
                self.helo = Some(args.to_owned());
                Step::Reply(format!(
                    "250-{SERVER_NAME} greets {args}\r\n250-8BITMIME\r\n250-SIZE {MAX_MESSAGE_BYTES}\r\n250 HELP\r\n"
                ))
            }
            "HELO" => {
                self.reset_transaction();
                self.helo = Some(args.to_owned());
                reply(250, SERVER_NAME)
            }
            "MAIL" => self.on_mail(args),
            "RCPT" => self.on_rcpt(args),
            "DATA" if self.rcpt_to.is_empty() => reply(503, "5.5.1 Error: need RCPT command"),
            "DATA" => {
                self.phase = Phase::Data { too_big: false };
                reply(354, "End data with <CR><LF>.<CR><LF>")
            }
            "RSET" => {
                self.reset_transaction();
                reply(250, "2.0.0 Ok")
            }
            "NOOP" => reply(250, "2.0.0 Ok"),
            "VRFY" => reply(252, "2.0.0 Cannot VRFY user, but will accept message"),
            "HELP" => reply(214, "2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT"),
            "QUIT" => Step::Close("221 2.0.0 Bye\r\n".into()),
            "STARTTLS" | "AUTH" => reply(502, "5.5.1 Error: command not implemented"),
            _ => reply(500, "5.5.2 Error: command not recognized"),
        }
    }

    fn on_mail(&mut self, args: &str) -> Step {
        if self.helo.is_none() {
            return reply(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.mail_from.is_some() {
            return reply(503, "5.5.1 Error: nested MAIL command");
        }
        match path_arg(args, "FROM:") {
            Some(addr) => {
                self.mail_from = Some(addr.to_owned());
                reply(250, "2.1.0 Ok")
            }
            None => reply(501, "5.5.4 Syntax: MAIL FROM:<address>"),
        }
    }

    fn on_rcpt(&mut self, args: &str) -> Step {
        if self.mail_from.is_none() {
            return reply(503, "5.5.1 Error: need MAIL command");
        }
        if self.rcpt_to.len() >= MAX_RECIPIENTS {
            return reply(452, "4.5.3 Error: too many recipients");
        }
        match path_arg(args, "TO:") {
            Some(addr) if !addr.is_empty() => {
                self.rcpt_to.push(addr.to_owned());
                reply(250, "2.1.5 Ok")
            }
            _ => reply(501, "5.5.4 Syntax: RCPT TO:<address>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(step: &Step) -> &str {
        match step {
            Step::Reply(r) | Step::Close(r) => &r[..3],
            Step::Continue => "cont",
            Step::Message(_) => "msg",
        }
    }

    #[test]
    fn a_full_transaction_with_dot_unstuffing() {
        let mut s = Session::default();
        assert_eq!(code(&s.on_line(b"MAIL FROM:<a@x>")), "503");
        assert!(matches!(s.on_line(b"EHLO client"), Step::Reply(r) if r.starts_with("250-")));
        assert_eq!(code(&s.on_line(b"DATA")), "503");
        assert_eq!(code(&s.on_line(b"RCPT TO:<b@x>")), "503");
        assert_eq!(code(&s.on_line(b"mail from:<a@x> SIZE=10")), "250");
        assert_eq!(code(&s.on_line(b"RCPT TO:<b@x>")), "250");
        assert_eq!(code(&s.on_line(b"RCPT TO:<c@x>")), "250");
        assert_eq!(code(&s.on_line(b"DATA")), "354");
        assert_eq!(code(&s.on_line(b"Subject: hi")), "cont");
        assert_eq!(code(&s.on_line(b"Message-Id: <1@x>")), "cont");
        assert_eq!(code(&s.on_line(b"")), "cont");
        assert_eq!(code(&s.on_line(b"..leading dot")), "cont");
        let Step::Message(m) = s.on_line(b".") else {
            panic!("expected a message");
        };
        assert_eq!((m.helo.as_str(), m.mail_from.as_str()), ("client", "a@x"));
        assert_eq!(m.rcpt_to, vec!["b@x", "c@x"]);
        let (headers, body) = m.split();
        assert_eq!(headers["message-id"], "<1@x>");
        assert_eq!(body, ".leading dot\r\n");
        // The transaction is reset, the greeting kept.
        assert_eq!(code(&s.on_line(b"DATA")), "503");
        assert_eq!(code(&s.on_line(b"MAIL FROM:<>")), "250");
        assert_eq!(code(&s.on_line(b"RSET")), "250");
        assert_eq!(code(&s.on_line(b"RCPT TO:<b@x>")), "503");
        assert_eq!(code(&s.on_line(b"NOOP")), "250");
        assert_eq!(code(&s.on_line(b"STARTTLS")), "502");
        assert_eq!(code(&s.on_line(b"BOGUS")), "500");
        assert_eq!(code(&s.on_line(b"QUIT")), "221");
    }

    #[test]
    fn folded_headers_are_unfolded() {
        let m = Message {
            helo: String::new(),
            mail_from: String::new(),
            rcpt_to: vec![],
            data: b"Subject: a\r\n  long subject\r\nTo: x@y\r\n\r\nbody\r\n".to_vec(),
        };
        let (headers, body) = m.split();
        assert_eq!(headers["subject"], "a long subject");
        assert_eq!(body, "body\r\n");
    }
}
