//! Authentication: JWT signing and verification (HS256 secret; EdDSA, ES256, RS256 public keys), roles,
//! and what each role may touch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{PublicKeyConfig, Secret};
use crate::domain::TenantSlug;

/// What a token holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, every tenant.
    PlatformAdmin,
    /// Read and write inside the token's tenant.
    TenantAdmin,
    /// Read only inside the token's tenant.
    TenantViewer,
}

impl Role {
    /// The role's name as it appears in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::TenantViewer => "tenant-viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "platform-admin" => Ok(Role::PlatformAdmin),
            "tenant-admin" => Ok(Role::TenantAdmin),
            "tenant-viewer" => Ok(Role::TenantViewer),
            _ => Err("role must be platform-admin, tenant-admin or tenant-viewer".into()),
        }
    }
}

/// The claims dialtone reads and writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who is acting (recorded in audit events).
    pub sub: String,
    /// Role name.
    pub role: String,
    /// Tenant slug, for tenant roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Audience.
    pub aud: String,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Token subject.
    pub subject: String,
    /// Role.
    pub role: Role,
    /// The tenant of a tenant role.
    pub tenant: Option<TenantSlug>,
}

/// Where a caller wants to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read.
    Read,
    /// Write.
    Write,
}

impl Principal {
    /// Whether this caller may act on `tenant` in this way.
    pub fn may(&self, tenant: &str, access: Access) -> bool {
        match self.role {
            Role::PlatformAdmin => true,
            Role::TenantAdmin => self.tenant.as_ref().is_some_and(|t| t.as_str() == tenant),
            Role::TenantViewer => {
                access == Access::Read && self.tenant.as_ref().is_some_and(|t| t.as_str() == tenant)
            }
        }
    }

    /// Whether this caller is a platform admin.
    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin
    }
}

/// Why a token was not accepted. Deliberately coarse towards the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("missing bearer token")]
    Missing,
    /// Present but not acceptable (bad signature, expired, wrong audience, unknown algorithm, bad claims).
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

struct PublicKey {
    algorithm: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Signing and verification keys, built once at start-up.
pub struct Keys {
    hs256: Option<(EncodingKey, DecodingKey)>,
    public: Vec<PublicKey>,
    audience: String,
    /// Tokens already verified, with the caller each names and its expiry: a client sends the same token
    /// with every request, and checking its signature and claims again was a tenth of the API's CPU per
    /// read. Keyed by the whole token, so a hit is exactly a token verified before; bounded (cleared when
    /// full).
    verified: Mutex<HashMap<String, (Principal, u64)>>,
}

/// Most tokens remembered by [`Keys::verify`].
const VERIFIED_CAPACITY: usize = 4096;
/// Seconds a token is still accepted after its `exp` (clock skew).
const LEEWAY: u64 = 5;

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("hs256", &self.hs256.is_some())
            .field("public", &self.public.len())
            .finish()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Keys {
    /// Builds the key set from configuration.
    pub fn new(
        secret: Option<&Secret>,
        public_keys: &[PublicKeyConfig],
        audience: &str,
    ) -> anyhow::Result<Keys> {
        let hs256 = match secret {
            Some(s) if s.expose().len() < 32 => bail!("the JWT secret must be at least 32 bytes"),
            Some(s) => Some((
                EncodingKey::from_secret(s.expose().as_bytes()),
                DecodingKey::from_secret(s.expose().as_bytes()),
            )),
            None => None,
        };
        let mut public = Vec::new();
        for pk in public_keys {
            let pem = std::fs::read(&pk.pem_file)
                .with_context(|| format!("reading {}", pk.pem_file.display()))?;
            let (algorithm, key) = match pk.algorithm.as_str() {
                "EdDSA" => (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem)),
                "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem)),
                "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)),
                other => bail!("unsupported JWT algorithm {other}; use EdDSA, ES256 or RS256"),
            };
            let key = key.with_context(|| {
                format!(
                    "{} is not a {} public key in PEM",
                    pk.pem_file.display(),
                    pk.algorithm
                )
            })?;
            public.push(PublicKey {
                algorithm,
                kid: pk.kid.clone(),
                key,
            });
        }
        Ok(Keys {
            hs256,
            public,
            audience: audience.to_owned(),
            verified: Mutex::default(),
        })
    }

    /// Signs an HS256 token.
    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        tenant: Option<&TenantSlug>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let (enc, _) = self.hs256.as_ref().context("no HS256 secret configured")?;
        if role != Role::PlatformAdmin && tenant.is_none() {
            bail!("a {} token needs --tenant", role.as_str());
        }
        let iat = now();
        let claims = Claims {
            sub: subject.to_owned(),
            role: role.as_str().to_owned(),
            tenant: tenant.map(|t| t.to_string()),
            exp: iat + ttl.as_secs(),
            aud: self.audience.clone(),
            iat: Some(iat),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            enc,
        )?)
    }

    /// Verifies a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, now())
    }

    /// [`Keys::verify`] at time `now` (seconds since the epoch) for a token verified before; a new one is
    /// checked in full against the clock.
    fn verify_at(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let known = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(token).cloned());
        if let Some((principal, exp)) = known {
            return if now <= exp.saturating_add(LEEWAY) {
                Ok(principal)
            } else {
                Err(AuthError::Invalid("expired"))
            };
        }
        let (principal, exp) = self.verify_token(token)?;
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= VERIFIED_CAPACITY {
                m.clear();
            }
            m.insert(token.to_owned(), (principal.clone(), exp));
        }
        Ok(principal)
    }

    /// Checks a token's signature and claims; the caller it names and its expiry.
    fn verify_token(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(_, d)| d),
            alg => self
                .public
                .iter()
                .find(|k| {
                    k.algorithm == alg
                        && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
                })
                .map(|k| &k.key),
        }
        .ok_or(AuthError::Invalid("algorithm not accepted"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = LEEWAY;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidSignature => "bad signature",
                _ => "rejected",
            })
        })?;
        let c = data.claims;
        let role: Role = c
            .role
            .parse()
            .map_err(|_| AuthError::Invalid("unknown role"))?;
        let tenant = match (role, c.tenant) {
            (Role::PlatformAdmin, _) => None,
            (_, Some(t)) => Some(
                t.parse::<TenantSlug>()
                    .map_err(|_| AuthError::Invalid("bad tenant claim"))?,
            ),
            (_, None) => return Err(AuthError::Invalid("tenant role without tenant claim")),
        };
        if c.sub.is_empty() || c.sub.len() > 200 {
            return Err(AuthError::Invalid("bad subject"));
        }
        Ok((
            Principal {
                subject: c.sub,
                role,
                tenant,
            },
            c.exp,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(
            Some(&Secret::new("0123456789abcdef0123456789abcdef")),
            &[],
            "dialtone",
        )
        .unwrap()
    }

    #[test]
    fn a_remembered_token_is_the_same_caller_until_it_expires_and_no_other_token_matches() {
        let k = keys();
        let t = k
            .issue("ops", Role::PlatformAdmin, None, Duration::from_secs(60))
            .unwrap();
        let first = k.verify(&t).unwrap();
        assert_eq!(k.verify(&t).unwrap(), first, "remembered");
        let exp = k.verified.lock().unwrap()[&t].1;
        assert_eq!(
            k.verify_at(&t, exp + LEEWAY).unwrap(),
            first,
            "within the leeway"
        );
        assert_eq!(
            k.verify_at(&t, exp + LEEWAY + 2),
            Err(AuthError::Invalid("expired")),
            "a remembered token still expires"
        );
        // A token that differs in its signature is not the remembered one.
        let mut forged = t.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(k.verify(&forged).is_err());
        // The bound holds.
        for i in 0..VERIFIED_CAPACITY + 10 {
            let t = k
                .issue(
                    &format!("u{i}"),
                    Role::PlatformAdmin,
                    None,
                    Duration::from_secs(60),
                )
                .unwrap();
            k.verify(&t).unwrap();
        }
        assert!(k.verified.lock().unwrap().len() <= VERIFIED_CAPACITY);
    }

    #[test]
    fn signs_and_verifies_with_the_one_crypto_backend() {
        let k = keys();
        let slug: TenantSlug = "acme".parse().unwrap();
        let t = k
            .issue(
                "ops",
                Role::TenantAdmin,
                Some(&slug),
                Duration::from_secs(60),
            )
            .unwrap();
        let p = k.verify(&t).unwrap();
        assert_eq!(
            p,
            Principal {
                subject: "ops".into(),
                role: Role::TenantAdmin,
                tenant: Some(slug)
            }
        );
        assert!(p.may("acme", Access::Write));
        assert!(!p.may("other", Access::Read));
    }

    #[test]
    fn refuses_tampered_none_expired_and_foreign_tokens() {
        let k = keys();
        let t = k
            .issue("ops", Role::PlatformAdmin, None, Duration::from_secs(60))
            .unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        // alg: none with the same payload
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        parts[0] = none_header;
        assert!(k.verify(&format!("{}.{}.", parts[0], parts[1])).is_err());
        // another secret
        let other = Keys::new(
            Some(&Secret::new("another-secret-another-secret-123")),
            &[],
            "dialtone",
        )
        .unwrap();
        assert_eq!(other.verify(&t), Err(AuthError::Invalid("bad signature")));
        // wrong audience
        let aud = Keys::new(
            Some(&Secret::new("0123456789abcdef0123456789abcdef")),
            &[],
            "other",
        )
        .unwrap();
        assert_eq!(aud.verify(&t), Err(AuthError::Invalid("wrong audience")));
        // expired
        let enc = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let c = Claims {
            sub: "x".into(),
            role: "platform-admin".into(),
            tenant: None,
            exp: now() - 100,
            aud: "dialtone".into(),
            iat: None,
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &enc).unwrap();
        assert_eq!(k.verify(&expired), Err(AuthError::Invalid("expired")));
        // viewer may read only
        let slug: TenantSlug = "acme".parse().unwrap();
        let v = k
            .verify(
                &k.issue(
                    "v",
                    Role::TenantViewer,
                    Some(&slug),
                    Duration::from_secs(60),
                )
                .unwrap(),
            )
            .unwrap();
        assert!(v.may("acme", Access::Read) && !v.may("acme", Access::Write));
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
    }

    fn claims(role: &str) -> Claims {
        Claims {
            sub: "portal".into(),
            role: role.into(),
            tenant: Some("acme".into()),
            exp: now() + 600,
            aud: "dialtone".into(),
            iat: None,
        }
    }

    #[test]
    fn tokens_from_an_identity_provider_verify_with_configured_public_keys() {
        let public =
            [("EdDSA", "ed25519"), ("ES256", "es256"), ("RS256", "rs256")].map(|(alg, f)| {
                PublicKeyConfig {
                    algorithm: alg.into(),
                    pem_file: fixture(&format!("{f}-public.pem")),
                    kid: None,
                }
            });
        let keys = Keys::new(
            Some(&Secret::new("0123456789abcdef0123456789abcdef")),
            &public,
            "dialtone",
        )
        .unwrap();
        for (alg, file, enc) in [
            (
                Algorithm::EdDSA,
                "ed25519",
                EncodingKey::from_ed_pem as fn(&[u8]) -> _,
            ),
            (Algorithm::ES256, "es256", EncodingKey::from_ec_pem),
            (Algorithm::RS256, "rs256", EncodingKey::from_rsa_pem),
        ] {
            let pem = std::fs::read(fixture(&format!("{file}-private.pem"))).unwrap();
            let key = enc(&pem).unwrap();
            let token =
                jsonwebtoken::encode(&Header::new(alg), &claims("tenant-admin"), &key).unwrap();
            let p = keys
                .verify(&token)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(p.role, Role::TenantAdmin);
            assert_eq!(p.tenant.unwrap().as_str(), "acme");
            // The same claims, tampered after signing, fail.
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = parts[1].chars().rev().collect();
            assert!(keys.verify(&parts.join(".")).is_err(), "{alg:?} tampered");
        }
    }

    #[test]
    fn an_hs256_token_signed_with_a_public_key_is_refused() {
        // Algorithm confusion: the attacker knows the public PEM and uses it as an HMAC secret.
        let pem_path = fixture("ed25519-public.pem");
        let public = [PublicKeyConfig {
            algorithm: "EdDSA".into(),
            pem_file: pem_path.clone(),
            kid: None,
        }];
        let pem = std::fs::read(&pem_path).unwrap();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("tenant-admin"),
            &EncodingKey::from_secret(&pem),
        )
        .unwrap();
        // With an HS256 secret configured: the signature does not match it.
        let keys = Keys::new(
            Some(&Secret::new("0123456789abcdef0123456789abcdef")),
            &public,
            "dialtone",
        )
        .unwrap();
        assert_eq!(
            keys.verify(&forged),
            Err(AuthError::Invalid("bad signature"))
        );
        // With public keys only: HS256 is not accepted at all.
        let keys = Keys::new(None, &public, "dialtone").unwrap();
        assert_eq!(
            keys.verify(&forged),
            Err(AuthError::Invalid("algorithm not accepted"))
        );
    }

    #[test]
    fn bad_key_configuration_fails_at_start() {
        let wrong = [PublicKeyConfig {
            algorithm: "ES256".into(),
            pem_file: fixture("ed25519-public.pem"),
            kid: None,
        }];
        assert!(Keys::new(None, &wrong, "dialtone").is_err());
        let unknown = [PublicKeyConfig {
            algorithm: "HS512".into(),
            pem_file: fixture("ed25519-public.pem"),
            kid: None,
        }];
        assert!(Keys::new(None, &unknown, "dialtone").is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Keys::new(Some(&Secret::new("short")), &[], "dialtone").is_err());
    }
}
