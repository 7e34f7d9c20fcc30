DROP TABLE signup_links;
DROP TABLE workspace_members;
DROP TABLE workspaces;
ALTER TABLE agent_registrations DROP COLUMN credentials_expire_at;
