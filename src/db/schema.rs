//! Portable table definitions, the same for SQLite and PostgreSQL.

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        secret_prefix -> Nullable<Text>,
        is_public -> Bool,
        redirect_uris -> Text,
        grant_types -> Text,
        scope -> Text,
        can_introspect -> Bool,
        token_endpoint_auth_method -> Text,
        application_type -> Text,
        registration_token_hash -> Nullable<Text>,
        metadata -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Nullable<Text>,
        email_verified -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_key -> Binary,
        public_jwk -> Text,
        created_at -> BigInt,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        event -> Text,
        created_at -> BigInt,
        actor -> Nullable<Text>,
        ip -> Nullable<Text>,
        registration_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    consents (user_id, client_id) {
        user_id -> Text,
        client_id -> Text,
        scope -> Text,
        granted_at -> BigInt,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        client_id -> Text,
        user_id -> Nullable<Text>,
        scope -> Text,
        resource -> Text,
        kind -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        user_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        resource -> Text,
        code_challenge -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        grant_id -> Nullable<Text>,
    }
}

diesel::table! {
    access_tokens (id) {
        id -> Text,
        grant_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        subject -> Text,
        user_id -> Nullable<Text>,
        scope -> Text,
        audience -> Text,
        prefix -> Text,
        format -> Text,
        issued_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        grant_id -> Text,
        prefix -> Text,
        issued_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        successor_sealed -> Nullable<Binary>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    clients,
    users,
    signing_keys,
    audit_events,
    sessions,
    consents,
    grants,
    authorization_codes,
    access_tokens,
    refresh_tokens,
);
