from subsecond.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_TIER_UNSPECIFIED: _ClassVar[CacheTier]
    CACHE_TIER_EXACT: _ClassVar[CacheTier]
    CACHE_TIER_SEMANTIC: _ClassVar[CacheTier]
CACHE_TIER_UNSPECIFIED: CacheTier
CACHE_TIER_EXACT: CacheTier
CACHE_TIER_SEMANTIC: CacheTier

class CacheQuery(_message.Message):
    __slots__ = ("tenant", "model", "messages", "sampling", "revision")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChatMessage]
    sampling: _types_pb2.SamplingParams
    revision: str
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_types_pb2.ChatMessage, _Mapping]]] = ..., sampling: _Optional[_Union[_types_pb2.SamplingParams, _Mapping]] = ..., revision: _Optional[str] = ...) -> None: ...

class CachedAnswer(_message.Message):
    __slots__ = ("chunks", "prompt_tokens", "completion_tokens", "finish_reason", "created_at", "chunk_offsets_seconds", "model")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OFFSETS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedScalarFieldContainer[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: _types_pb2.FinishReason
    created_at: float
    chunk_offsets_seconds: _containers.RepeatedScalarFieldContainer[float]
    model: str
    def __init__(self, chunks: _Optional[_Iterable[str]] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., finish_reason: _Optional[_Union[_types_pb2.FinishReason, str]] = ..., created_at: _Optional[float] = ..., chunk_offsets_seconds: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("query", "max_tokens", "max_age_seconds", "semantic", "want_embedding", "skip_exact")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    WANT_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    SKIP_EXACT_FIELD_NUMBER: _ClassVar[int]
    query: CacheQuery
    max_tokens: int
    max_age_seconds: int
    semantic: bool
    want_embedding: bool
    skip_exact: bool
    def __init__(self, query: _Optional[_Union[CacheQuery, _Mapping]] = ..., max_tokens: _Optional[int] = ..., max_age_seconds: _Optional[int] = ..., semantic: _Optional[bool] = ..., want_embedding: _Optional[bool] = ..., skip_exact: _Optional[bool] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("hit", "tier", "answer", "similarity", "age_seconds", "bypassed", "embedding")
    HIT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    tier: CacheTier
    answer: CachedAnswer
    similarity: float
    age_seconds: float
    bypassed: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, hit: _Optional[bool] = ..., tier: _Optional[_Union[CacheTier, str]] = ..., answer: _Optional[_Union[CachedAnswer, _Mapping]] = ..., similarity: _Optional[float] = ..., age_seconds: _Optional[float] = ..., bypassed: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("query", "answer", "ttl_seconds", "embedding")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    query: CacheQuery
    answer: CachedAnswer
    ttl_seconds: int
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, query: _Optional[_Union[CacheQuery, _Mapping]] = ..., answer: _Optional[_Union[CachedAnswer, _Mapping]] = ..., ttl_seconds: _Optional[int] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("key", "semantic_indexed")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_INDEXED_FIELD_NUMBER: _ClassVar[int]
    key: str
    semantic_indexed: bool
    def __init__(self, key: _Optional[str] = ..., semantic_indexed: _Optional[bool] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("query",)
    QUERY_FIELD_NUMBER: _ClassVar[int]
    query: CacheQuery
    def __init__(self, query: _Optional[_Union[CacheQuery, _Mapping]] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("removed", "vectors_removed")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    VECTORS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    vectors_removed: int
    def __init__(self, removed: _Optional[int] = ..., vectors_removed: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class TenantStats(_message.Message):
    __slots__ = ("exact_entries", "vectors")
    EXACT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    exact_entries: int
    vectors: int
    def __init__(self, exact_entries: _Optional[int] = ..., vectors: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("tenants", "semantic_backend", "lookups", "stores")
    class TenantsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TenantStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TenantStats, _Mapping]] = ...) -> None: ...
    class LookupsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class StoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_BACKEND_FIELD_NUMBER: _ClassVar[int]
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.MessageMap[str, TenantStats]
    semantic_backend: str
    lookups: _containers.ScalarMap[str, int]
    stores: _containers.ScalarMap[str, int]
    def __init__(self, tenants: _Optional[_Mapping[str, TenantStats]] = ..., semantic_backend: _Optional[str] = ..., lookups: _Optional[_Mapping[str, int]] = ..., stores: _Optional[_Mapping[str, int]] = ...) -> None: ...
