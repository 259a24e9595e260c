"""Test engines join the registry as real engines do: with a descriptor."""
from PromptEngines.descriptor import EngineDescriptor
from PromptEngines.registry import register


def registered(name: str, capabilities, **fields):
    """Class decorator: describe a test engine and add it to the registry."""
    def decorate(cls):
        cls.descriptor = register(EngineDescriptor(
            name=name, summary=f"test engine {name}", engine=cls,
            capabilities=frozenset(capabilities), **fields))
        return cls
    return decorate
