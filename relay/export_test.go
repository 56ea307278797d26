package relay

// AppendTimestampForTest exposes appendTimestamp to the tests.
var AppendTimestampForTest = appendTimestamp
