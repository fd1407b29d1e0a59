//! Signed Agent Cards: a detached JWS (RFC 7515) over the card in its JCS
//! canonical form (RFC 8785) with `signatures` removed, as the A2A spec's
//! card-signing section describes. Switchyard signs its own card with a
//! configured key, and a worker may require the cards of the agents it
//! calls to carry a valid signature from a trusted key set.
//!
//! The canonical form is taken from the card's JSON as served (the bytes a
//! verifier fetched, parsed, never re-serialized through our types), so
//! fields we do not model are covered too.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

/// Signs cards with one key.
#[derive(Clone)]
pub struct CardSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    kid: String,
}

impl std::fmt::Debug for CardSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardSigner").field("algorithm", &self.algorithm).field("kid", &self.kid).finish()
    }
}

impl CardSigner {
    /// A signer from a PKCS#8 PEM private key: a P-256 key signs ES256, an
    /// RSA key RS256.
    pub fn from_pem(pem: &[u8], kid: impl Into<String>) -> Result<CardSigner, String> {
        let (key, algorithm) = match EncodingKey::from_ec_pem(pem) {
            Ok(key) => (key, Algorithm::ES256),
            Err(_) => (
                EncodingKey::from_rsa_pem(pem)
                    .map_err(|_| "the card signing key is neither a P-256 nor an RSA PEM key")?,
                Algorithm::RS256,
            ),
        };
        let signer = CardSigner { key, algorithm, kid: kid.into() };
        // A key that cannot sign is found at start, not on the first card.
        signer.signature(&json!({})).map(|_| signer)
    }

    /// Adds this key's signature to `card` (replacing any there was).
    pub fn sign(&self, card: &mut Value) -> Result<(), String> {
        let signature = self.signature(card)?;
        card["signatures"] = json!([signature]);
        Ok(())
    }

    fn signature(&self, card: &Value) -> Result<Value, String> {
        let header = json!({ "alg": format!("{:?}", self.algorithm), "kid": self.kid, "typ": "JOSE" });
        let protected = URL_SAFE_NO_PAD.encode(header.to_string());
        let input = signing_input(&protected, card)?;
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.algorithm)
            .map_err(|e| format!("signing the card: {e}"))?;
        Ok(json!({ "protected": protected, "signature": signature }))
    }
}

/// The card's canonical form: `signatures` removed, JCS.
pub fn canonical(card: &Value) -> Result<String, String> {
    let mut unsigned = card.clone();
    if let Some(map) = unsigned.as_object_mut() {
        map.remove("signatures");
    }
    serde_jcs::to_string(&unsigned).map_err(|e| format!("canonicalizing the card: {e}"))
}

fn signing_input(protected: &str, card: &Value) -> Result<String, String> {
    Ok(format!("{protected}.{}", URL_SAFE_NO_PAD.encode(canonical(card)?)))
}

/// Checks that `card` carries at least one valid signature by a key of
/// `trusted`; returns that key's id. A card that was changed after it was
/// signed, one signed by another key, and one not signed at all are refused.
pub fn verify(card: &Value, trusted: &JwkSet) -> Result<String, String> {
    let signatures = card.get("signatures").and_then(Value::as_array).filter(|s| !s.is_empty());
    let Some(signatures) = signatures else {
        return Err("the agent card is not signed".into());
    };
    let mut last = String::from("no signature verified");
    for signature in signatures {
        match verify_one(card, signature, trusted) {
            Ok(kid) => return Ok(kid),
            Err(e) => last = e,
        }
    }
    Err(format!("the agent card's signature does not verify: {last}"))
}

fn verify_one(card: &Value, signature: &Value, trusted: &JwkSet) -> Result<String, String> {
    let protected = signature.get("protected").and_then(Value::as_str).ok_or("a signature without `protected`")?;
    let value = signature.get("signature").and_then(Value::as_str).ok_or("a signature without `signature`")?;
    let header: Value = URL_SAFE_NO_PAD
        .decode(protected)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("an unreadable protected header")?;
    let kid = header.get("kid").and_then(Value::as_str).ok_or("no `kid` in the protected header")?;
    let jwk = trusted.find(kid).ok_or_else(|| format!("key {kid:?} is not trusted"))?;
    // The algorithm is the trusted key's, never the header's alone.
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return Err(format!("key {kid:?} is not an RS256 or ES256 key")),
    };
    if header.get("alg").and_then(Value::as_str) != Some(format!("{algorithm:?}").as_str()) {
        return Err(format!("the header's algorithm is not key {kid:?}'s"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))?;
    let input = signing_input(protected, card)?;
    match jsonwebtoken::crypto::verify(value, input.as_bytes(), &key, algorithm) {
        Ok(true) => Ok(kid.to_owned()),
        _ => Err(format!("the signature by {kid:?} does not match the card")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key in PKCS#8 PEM, for these tests only.
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYygEorT+OnlRkQ3O
VA0zg5pWSJqpCGUQMI7f+IX/rEihRANCAATnS3FckylsJi2iWJ2sKUP4jSL9frlI
uP1doaN0Ujh5muHGcHMILwJM239PND5KFiZrOhOkiwXFno9mtPGkwgfj
-----END PRIVATE KEY-----
";

    fn trusted(kid: &str) -> JwkSet {
        let key = EncodingKey::from_ec_pem(EC_KEY.as_bytes()).expect("key");
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some(kid.into());
        JwkSet { keys: vec![jwk] }
    }

    #[test]
    fn a_signed_card_verifies_and_a_tampered_one_does_not() {
        let signer = CardSigner::from_pem(EC_KEY.as_bytes(), "card-1").expect("signer");
        let mut card = json!({ "name": "Switchyard", "skills": [{ "id": "route" }], "version": "1" });
        signer.sign(&mut card).expect("sign");
        assert_eq!(verify(&card, &trusted("card-1")), Ok("card-1".to_owned()));
        // Key order and whitespace do not matter: the canonical form does.
        let reordered: Value = serde_json::from_str(&serde_json::to_string_pretty(&card).expect("json")).expect("json");
        assert!(verify(&reordered, &trusted("card-1")).is_ok());

        let mut tampered = card.clone();
        tampered["skills"][0]["id"] = json!("exfiltrate");
        assert!(verify(&tampered, &trusted("card-1")).is_err(), "a changed skill");
        let mut unsigned = card.clone();
        unsigned.as_object_mut().expect("object").remove("signatures");
        assert!(verify(&unsigned, &trusted("card-1")).is_err(), "no signature");
        assert!(verify(&card, &trusted("another")).is_err(), "an untrusted key");
    }
}
