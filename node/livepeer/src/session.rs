//! A session with one orchestrator: what one `GetOrchestrator` reply gave us
//! and when it must be fetched again.

use mesh_core::{OrchestratorId, OrchestratorInfo, WeiPrice};

use crate::convert::{orchestrator_info_from_proto, price_from_proto};
use crate::error::OrchestratorError;
use crate::proto;

/// The result of one `GetOrchestrator` call, ready to submit jobs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The orchestrator's self-description (capabilities, prices, GPUs).
    pub info: OrchestratorInfo,
    /// Base URL of every HTTP call (`OrchestratorInfo.transcoder`, trailing
    /// slash trimmed); may differ from the address we queried.
    pub transcoder: String,
    /// Session credentials, echoed in every `Livepeer-Segment` header.
    pub auth_token: Option<proto::AuthToken>,
    /// The price for the requested capabilities (`price_info`); `None`
    /// offchain or when the orchestrator sent an invalid price.
    pub price: Option<WeiPrice>,
    /// Ticket parameters for on-chain payments (absent offchain); a payment
    /// source must use the ones from the same reply as `price`.
    pub ticket_params: Option<proto::TicketParams>,
    /// When the reply arrived, unix seconds.
    pub fetched_at_unix: i64,
}

impl Session {
    /// A session from a `GetOrchestrator` reply for the orchestrator queried
    /// as `id`. Fails only when the reply has no usable transcoder URL.
    pub fn from_reply(
        id: OrchestratorId,
        reply: &proto::OrchestratorInfo,
        fetched_at_unix: i64,
    ) -> Result<Self, OrchestratorError> {
        let info = orchestrator_info_from_proto(id, reply)?;
        Ok(Self {
            transcoder: info.transcoder.clone(),
            info,
            auth_token: reply.auth_token.clone(),
            price: reply.price_info.as_ref().and_then(price_from_proto),
            ticket_params: reply.ticket_params.clone(),
            fetched_at_unix,
        })
    }

    /// Whether the session must be refreshed before the next job: no token,
    /// an expired token, or within the last 10 % of the token's life
    /// (go-livepeer `shouldRefreshSession`, the last 3 min of 30).
    pub fn needs_refresh(&self, now_unix: i64) -> bool {
        let Some(token) = &self.auth_token else {
            return true;
        };
        let expiration = i128::from(token.expiration);
        let now = i128::from(now_unix);
        if now >= expiration {
            return true;
        }
        let life = (expiration - i128::from(self.fetched_at_unix)).max(0);
        now >= expiration - life / 10
    }
}

#[cfg(test)]
mod tests {
    use mesh_core::Capabilities;

    use super::*;

    fn session(expiration: Option<i64>, fetched_at_unix: i64) -> Session {
        Session {
            info: OrchestratorInfo {
                id: OrchestratorId::parse("127.0.0.1:1").unwrap(),
                transcoder: "https://127.0.0.1:1".into(),
                capabilities: Capabilities::default(),
                prices: Vec::new(),
                hardware: Vec::new(),
            },
            transcoder: "https://127.0.0.1:1".into(),
            auth_token: expiration.map(|expiration| proto::AuthToken {
                token: vec![1],
                session_id: "s".into(),
                expiration,
            }),
            price: None,
            ticket_params: None,
            fetched_at_unix,
        }
    }

    #[test]
    fn from_reply_keeps_credentials_and_price() {
        let id = OrchestratorId::parse("orch.example").unwrap();
        let reply = proto::OrchestratorInfo {
            transcoder: "https://10.1.1.1:8935/".into(),
            price_info: Some(proto::PriceInfo {
                price_per_unit: 3,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            auth_token: Some(proto::AuthToken {
                token: vec![7; 32],
                session_id: "abc".into(),
                expiration: 1_800,
            }),
            ..Default::default()
        };
        let session = Session::from_reply(id.clone(), &reply, 0).unwrap();
        assert_eq!(session.transcoder, "https://10.1.1.1:8935");
        assert_eq!(session.info.id, id);
        assert_eq!(session.price, Some(WeiPrice::new(3, 1).unwrap()));
        assert_eq!(session.auth_token, reply.auth_token);
        assert!(!session.needs_refresh(0));

        let bad_price = proto::OrchestratorInfo {
            price_info: Some(proto::PriceInfo::default()),
            ..reply.clone()
        };
        assert_eq!(
            Session::from_reply(id.clone(), &bad_price, 0)
                .unwrap()
                .price,
            None
        );
        let no_transcoder = proto::OrchestratorInfo {
            transcoder: String::new(),
            ..reply
        };
        assert!(Session::from_reply(id, &no_transcoder, 0).is_err());
    }

    #[test]
    fn refresh_in_the_last_tenth_of_the_token_life() {
        // 30 min token fetched at 1000: refresh from 1000 + 1800 - 180.
        let fresh = session(Some(2800), 1000);
        assert!(!fresh.needs_refresh(1000));
        assert!(!fresh.needs_refresh(2619));
        assert!(fresh.needs_refresh(2620));
        assert!(fresh.needs_refresh(2800));
        assert!(fresh.needs_refresh(10_000));
    }

    #[test]
    fn missing_expired_or_absurd_tokens_refresh() {
        assert!(session(None, 0).needs_refresh(0));
        assert!(session(Some(5), 10).needs_refresh(10));
        // Hostile values must not overflow.
        assert!(!session(Some(i64::MAX), i64::MIN).needs_refresh(0));
        assert!(session(Some(i64::MIN), i64::MAX).needs_refresh(i64::MAX));
    }
}
