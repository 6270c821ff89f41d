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
CACHE_MODE_USE: CacheMode
CACHE_MODE_BYPASS: CacheMode
CACHE_MODE_REFRESH: CacheMode
CHUNKING_TOKEN: Chunking
CHUNKING_SENTENCE: Chunking

class CachePolicy(_message.Message):
    __slots__ = ("mode", "max_age_seconds")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    mode: CacheMode
    max_age_seconds: int
    def __init__(self, mode: _Optional[_Union[CacheMode, str]] = ..., max_age_seconds: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "messages", "model", "max_tokens", "sampling", "cache", "chunking")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChatMessage]
    model: str
    max_tokens: int
    sampling: _types_pb2.SamplingParams
    cache: CachePolicy
    chunking: Chunking
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_types_pb2.ChatMessage, _Mapping]]] = ..., model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., sampling: _Optional[_Union[_types_pb2.SamplingParams, _Mapping]] = ..., cache: _Optional[_Union[CachePolicy, _Mapping]] = ..., chunking: _Optional[_Union[Chunking, str]] = ...) -> None: ...

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
    __slots__ = ("served_by", "similarity", "cache_age_seconds", "time_to_first_chunk_seconds", "total_seconds", "prompt_tokens", "completion_tokens", "finish_reason", "model", "coalesced")
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
    def __init__(self, served_by: _Optional[_Union[_types_pb2.ServedBy, str]] = ..., similarity: _Optional[float] = ..., cache_age_seconds: _Optional[float] = ..., time_to_first_chunk_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., finish_reason: _Optional[_Union[_types_pb2.FinishReason, str]] = ..., model: _Optional[str] = ..., coalesced: _Optional[bool] = ...) -> None: ...
