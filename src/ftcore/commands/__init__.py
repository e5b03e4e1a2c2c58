"""ftcore's own ``ft`` subcommands; each module imports click only, its command bodies the heavy libraries."""

#: name -> "module:attribute" of every subcommand, in the order ``ft --help`` lists them.
COMMANDS = {
    "train": "ftcore.commands.train:train",
    "evaluate": "ftcore.commands.evaluate:evaluate",
    "benchmark": "ftcore.commands.benchmark:benchmark",
    "generate": "ftcore.commands.generate:generate",
    "chat": "ftcore.commands.generate:chat",
    "merge": "ftcore.commands.merge:merge",
    "recommend": "ftcore.commands.recommend:recommend",
    "data": "ftcore.commands.data:data",
    "config": "ftcore.commands.config:config",
    "plugins": "ftcore.commands.plugins:plugins",
    "plugin": "ftcore.commands.plugins:plugin",
    "env": "ftcore.commands.env:env",
}
