"""Maintenance pipelines: the fee patch (T+1) and the price patch (ad hoc), each with an audit trail."""
