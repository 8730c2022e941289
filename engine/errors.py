"""TEMPORARY: replaced by the engine branch's errors module at merge."""


class EngineError(Exception):
    pass


class InvalidReference(EngineError):
    pass
