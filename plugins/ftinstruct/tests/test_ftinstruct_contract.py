"""ftinstruct held to ftcore's method and format contract suites."""

from ftcore.testing.suites import FormatContract, MethodContract


class TestInstructionMethod(MethodContract):
    method = "instruction"
    options = {"r": 8}
    bad_options = [{"r": 0}, {"rnak": 8}]


class TestAlpaca(FormatContract):
    format = "alpaca"
    records = [
        {"instruction": "Reverse the word", "input": "cat", "output": "tac"},
        {"instruction": "Say hello", "output": "hello"},
    ]
    expected = [
        {"messages": [{"role": "user", "content": "Reverse the word\n\ncat"}, {"role": "assistant", "content": "tac"}]},
        {"messages": [{"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "hello"}]},
    ]
    bad_record = {"instruction": "no output"}


class TestShareGPT(FormatContract):
    format = "sharegpt"
    records = [
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    ]
    expected = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ]
    bad_record = {"conversations": [{"from": "martian", "value": "?"}]}


class TestMessages(FormatContract):
    format = "messages"
    records = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    expected = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    bad_record = {"messages": "not a list"}
