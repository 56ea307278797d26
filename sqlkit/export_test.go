package sqlkit

// MigrateTo lets tests start from an older schema version.
var MigrateTo = migrateTo
