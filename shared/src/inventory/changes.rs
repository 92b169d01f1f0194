//! What may have changed since the poll's cursor.
