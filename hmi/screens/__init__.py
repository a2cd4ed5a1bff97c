"""Screens: compose widgets, bind keys, call services in workers, render results."""
