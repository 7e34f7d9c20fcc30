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
        disabled_at -> Nullable<BigInt>,
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
        request_id -> Nullable<Text>,
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
        client_id -> Nullable<Text>,
        registration_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        subject -> Text,
        scope -> Text,
        resource -> Text,
        kind -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        provider_iss -> Nullable<Text>,
        provider_sub -> Nullable<Text>,
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
        nonce -> Nullable<Text>,
        auth_time -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_codes (device_code_hash) {
        device_code_hash -> Text,
        user_code_hash -> Text,
        client_id -> Text,
        scope -> Text,
        resource -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        poll_interval -> BigInt,
        last_polled_at -> Nullable<BigInt>,
        status -> Text,
        user_id -> Nullable<Text>,
        auth_time -> Nullable<BigInt>,
        grant_id -> Nullable<Text>,
    }
}

diesel::table! {
    access_tokens (id) {
        id -> Text,
        grant_id -> Nullable<Text>,
        registration_id -> Nullable<Text>,
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

diesel::table! {
    agent_registrations (id) {
        id -> Text,
        registration_type -> Text,
        status -> Text,
        requested_credential_type -> Text,
        principal_id -> Text,
        scopes -> Text,
        claim_token_hash -> Nullable<Text>,
        claim_token_expires -> BigInt,
        email -> Nullable<Text>,
        user_id -> Nullable<Text>,
        link -> Nullable<Bool>,
        provider_iss -> Nullable<Text>,
        provider_sub -> Nullable<Text>,
        created_at -> BigInt,
        claimed_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        protocol -> Text,
        claim_polled_at -> Nullable<BigInt>,
        claim_poll_interval -> Nullable<BigInt>,
        credentials_expire_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_keys (key_hash) {
        key_hash -> Text,
        registration_id -> Text,
        prefix -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    claim_attempts (id) {
        id -> Text,
        registration_id -> Text,
        email -> Text,
        link -> Bool,
        view_token_hash -> Text,
        status -> Text,
        otp_hash -> Nullable<Text>,
        otp_expires_at -> Nullable<BigInt>,
        failed_attempts -> Integer,
        created_at -> BigInt,
        expires_at -> BigInt,
        ceremony -> Text,
    }
}

diesel::table! {
    seen_jtis (issuer, jti) {
        issuer -> Text,
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    delegations (issuer, subject) {
        issuer -> Text,
        subject -> Text,
        user_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    rate_limit_windows (bucket, window_start) {
        bucket -> Text,
        window_start -> BigInt,
        hits -> Integer,
    }
}

diesel::table! {
    personal_tokens (id) {
        id -> Text,
        token_hash -> Text,
        user_id -> Text,
        workspace -> Nullable<Text>,
        name -> Text,
        prefix -> Text,
        scopes -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        parent_id -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (key_hash) {
        key_hash -> Text,
        request_hash -> Text,
        status -> Nullable<Integer>,
        content_type -> Nullable<Text>,
        sealed_body -> Nullable<Binary>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        secret -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Text,
        name -> Text,
        owner_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    workspace_members (workspace_id, user_id) {
        workspace_id -> Text,
        user_id -> Text,
        added_at -> BigInt,
    }
}

diesel::table! {
    signup_links (token_hash) {
        token_hash -> Text,
        email -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::joinable!(workspace_members -> workspaces (workspace_id));
diesel::joinable!(workspace_members -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    workspaces,
    workspace_members,
    signup_links,
    server_secrets,
    personal_tokens,
    idempotency_keys,
    agent_registrations,
    api_keys,
    claim_attempts,
    seen_jtis,
    delegations,
    rate_limit_windows,
    clients,
    users,
    signing_keys,
    audit_events,
    sessions,
    consents,
    grants,
    authorization_codes,
    device_codes,
    access_tokens,
    refresh_tokens,
);
