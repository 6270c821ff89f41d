from subsecond.v1 import cache_pb2 as _cache_pb2
from subsecond.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_MODE_USE: _ClassVar[CacheMode]
    CACHE_MODE_BYPASS: _ClassVar[CacheMode]
    CACHE_MODE_REFRESH: _ClassVar[CacheMode]

class Chunking(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHUNKING_TOKEN: _ClassVar[Chunking]
    CHUNKING_SENTENCE: _ClassVar[Chunking]

class Replay(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLAY_AT_ONCE: _ClassVar[Replay]
    REPLAY_PACED: _ClassVar[Replay]
CACHE_MODE_USE: CacheMode
CACHE_MODE_BYPASS: CacheMode
CACHE_MODE_REFRESH: CacheMode
CHUNKING_TOKEN: Chunking
CHUNKING_SENTENCE: Chunking
REPLAY_AT_ONCE: Replay
REPLAY_PACED: Replay

class CachePolicy(_message.Message):
    __slots__ = ("mode", "max_age_seconds")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    mode: CacheMode
    max_age_seconds: int
    def __init__(self, mode: _Optional[_Union[CacheMode, str]] = ..., max_age_seconds: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "messages", "model", "max_tokens", "sampling", "cache", "chunking", "task", "replay")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChatMessage]
    model: str
    max_tokens: int
    sampling: _types_pb2.SamplingParams
    cache: CachePolicy
    chunking: Chunking
    task: str
    replay: Replay
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_types_pb2.ChatMessage, _Mapping]]] = ..., model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., sampling: _Optional[_Union[_types_pb2.SamplingParams, _Mapping]] = ..., cache: _Optional[_Union[CachePolicy, _Mapping]] = ..., chunking: _Optional[_Union[Chunking, str]] = ..., task: _Optional[str] = ..., replay: _Optional[_Union[Replay, str]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("text", "index", "done")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    text: str
    index: int
    done: Completion
    def __init__(self, text: _Optional[str] = ..., index: _Optional[int] = ..., done: _Optional[_Union[Completion, _Mapping]] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("served_by", "similarity", "cache_age_seconds", "time_to_first_chunk_seconds", "total_seconds", "prompt_tokens", "completion_tokens", "finish_reason", "model", "coalesced", "tier_reason", "trimmed_prompt_tokens", "static_route")
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CACHE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_CHUNK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    TIER_REASON_FIELD_NUMBER: _ClassVar[int]
    TRIMMED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STATIC_ROUTE_FIELD_NUMBER: _ClassVar[int]
    served_by: _types_pb2.ServedBy
    similarity: float
    cache_age_seconds: float
    time_to_first_chunk_seconds: float
    total_seconds: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: _types_pb2.FinishReason
    model: str
    coalesced: bool
    tier_reason: str
    trimmed_prompt_tokens: int
    static_route: str
    def __init__(self, served_by: _Optional[_Union[_types_pb2.ServedBy, str]] = ..., similarity: _Optional[float] = ..., cache_age_seconds: _Optional[float] = ..., time_to_first_chunk_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., finish_reason: _Optional[_Union[_types_pb2.FinishReason, str]] = ..., model: _Optional[str] = ..., coalesced: _Optional[bool] = ..., tier_reason: _Optional[str] = ..., trimmed_prompt_tokens: _Optional[int] = ..., static_route: _Optional[str] = ...) -> None: ...

class WorkflowStep(_message.Message):
    __slots__ = ("id", "request", "depends_on")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    id: str
    request: GenerateRequest
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., request: _Optional[_Union[GenerateRequest, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkflowRequest(_message.Message):
    __slots__ = ("inputs", "steps", "chunking")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.ScalarMap[str, str]
    steps: _containers.RepeatedCompositeFieldContainer[WorkflowStep]
    chunking: Chunking
    def __init__(self, inputs: _Optional[_Mapping[str, str]] = ..., steps: _Optional[_Iterable[_Union[WorkflowStep, _Mapping]]] = ..., chunking: _Optional[_Union[Chunking, str]] = ...) -> None: ...

class StepStarted(_message.Message):
    __slots__ = ("depends_on",)
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkflowSummary(_message.Message):
    __slots__ = ("total_seconds", "critical_path_seconds", "sequential_seconds", "critical_path")
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_PATH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEQUENTIAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_PATH_FIELD_NUMBER: _ClassVar[int]
    total_seconds: float
    critical_path_seconds: float
    sequential_seconds: float
    critical_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, total_seconds: _Optional[float] = ..., critical_path_seconds: _Optional[float] = ..., sequential_seconds: _Optional[float] = ..., critical_path: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkflowEvent(_message.Message):
    __slots__ = ("step", "at_seconds", "started", "chunk", "summary")
    STEP_FIELD_NUMBER: _ClassVar[int]
    AT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    step: str
    at_seconds: float
    started: StepStarted
    chunk: GenerateResponse
    summary: WorkflowSummary
    def __init__(self, step: _Optional[str] = ..., at_seconds: _Optional[float] = ..., started: _Optional[_Union[StepStarted, _Mapping]] = ..., chunk: _Optional[_Union[GenerateResponse, _Mapping]] = ..., summary: _Optional[_Union[WorkflowSummary, _Mapping]] = ...) -> None: ...

class ListStaticRoutesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StaticRoute(_message.Message):
    __slots__ = ("name", "regex", "task", "answer")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    name: str
    regex: str
    task: str
    answer: str
    def __init__(self, name: _Optional[str] = ..., regex: _Optional[str] = ..., task: _Optional[str] = ..., answer: _Optional[str] = ...) -> None: ...

class ListStaticRoutesResponse(_message.Message):
    __slots__ = ("routes",)
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[StaticRoute]
    def __init__(self, routes: _Optional[_Iterable[_Union[StaticRoute, _Mapping]]] = ...) -> None: ...

class InvalidateCacheRequest(_message.Message):
    __slots__ = ("tenant", "model", "prompt", "sampling")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    model: str
    prompt: str
    sampling: _types_pb2.SamplingParams
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., prompt: _Optional[str] = ..., sampling: _Optional[_Union[_types_pb2.SamplingParams, _Mapping]] = ...) -> None: ...

class InvalidateCacheResponse(_message.Message):
    __slots__ = ("removed", "vectors_removed")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    VECTORS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    vectors_removed: int
    def __init__(self, removed: _Optional[int] = ..., vectors_removed: _Optional[int] = ...) -> None: ...

class CacheStatsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class CacheStatsResponse(_message.Message):
    __slots__ = ("near_cache_entries", "near_cache_bytes", "cache_breaker_open", "revisions", "cache")
    class RevisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NEAR_CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEAR_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BREAKER_OPEN_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    near_cache_entries: int
    near_cache_bytes: int
    cache_breaker_open: bool
    revisions: _containers.ScalarMap[str, str]
    cache: _cache_pb2.StatsResponse
    def __init__(self, near_cache_entries: _Optional[int] = ..., near_cache_bytes: _Optional[int] = ..., cache_breaker_open: _Optional[bool] = ..., revisions: _Optional[_Mapping[str, str]] = ..., cache: _Optional[_Union[_cache_pb2.StatsResponse, _Mapping]] = ...) -> None: ...
