package predlog

// SetMultiRowInsert makes s write with multi-row INSERT statements instead
// of COPY, for the tests and the benchmark that compare the two.
func SetMultiRowInsert(s *Postgres, on bool) { s.multiRowInsert = on }

// HashID exposes the sampling hash to the tests.
var HashID = hashID
