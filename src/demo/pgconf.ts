// What every throwaway cluster runs with (pg.ts): settings for a fast, disposable
// server that streams to a standby, and trust authentication on loopback only.

export const baseConf = [
  "listen_addresses = '127.0.0.1'",
  "wal_level = replica",
  "max_wal_senders = 5",
  "hot_standby = on",
  "fsync = off",
  "synchronous_commit = off",
  "full_page_writes = on",
  "wal_log_hints = on", // so that pg_rewind works
  "shared_buffers = 16MB",
  "max_connections = 30",
  "log_min_messages = warning",
  "logging_collector = off",
];

export const trustHba = [
  "local all all trust",
  "host all all 127.0.0.1/32 trust",
  "host all all ::1/128 trust",
  "local replication all trust",
  "host replication all 127.0.0.1/32 trust",
  "host replication all ::1/128 trust",
];

export const streamingQuery =
  "select pg_is_in_recovery() and exists (select from pg_stat_wal_receiver where status = 'streaming')";
